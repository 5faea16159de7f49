//go:build !linux

package handoff

import (
	"errors"
	"net"
)

var errNotLinux = errors.New("steering a reuseport group needs Linux")

func steerToNewest(*net.TCPListener) error { return errNotLinux }

func acceptQueued(*net.TCPListener) ([]net.Conn, error) { return nil, errNotLinux }
