package handoff

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// steerToNewest attaches to tcp's reuseport group a classic BPF program that
// picks the group's second socket. The kernel keeps a group's listening
// sockets in the order they were opened and falls back to its hash when
// the index is out of range: alone, a socket gets every connection; while
// a reload opens a new socket beside the old one, the new one gets them
// all, and the old one's queue only drains.
func steerToNewest(tcp *net.TCPListener) error {
	rc, err := tcp.SyscallConn()
	if err != nil {
		return err
	}
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 1}}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("attaching the reuseport program: %w", serr)
	}
	return nil
}

// acceptQueued accepts, without waiting, every connection queued on tcp.
func acceptQueued(tcp *net.TCPListener) ([]net.Conn, error) {
	rc, err := tcp.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fds []int
	var aerr error
	// Control, not Read: a listener's RawConn has no Read. Nothing else
	// accepts on tcp by now.
	if err := rc.Control(func(fd uintptr) {
		for {
			nfd, _, err := unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			switch {
			case err == nil:
				fds = append(fds, nfd)
			case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
			case errors.Is(err, unix.EAGAIN):
				return
			default:
				aerr = fmt.Errorf("accept: %w", err)
				return
			}
		}
	}); err != nil {
		return nil, err
	}
	conns := make([]net.Conn, 0, len(fds))
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "")
		c, err := net.FileConn(f)
		// FileConn has its own copy of the descriptor.
		_ = f.Close()
		if err != nil {
			aerr = errors.Join(aerr, err)
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			// As net.Listen's connections.
			_ = tc.SetKeepAlive(true)
		}
		conns = append(conns, c)
	}
	return conns, aerr
}
