// Package caddyargs reads the typed arguments of Caddyfile subdirectives the
// same way in every module: called with the dispenser on the option's name,
// each reads the next argument, and a bad value is an error naming the option,
// the value and the file and line.
package caddyargs

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// Duration reads a duration such as 250ms or 1h.
func Duration(d *caddyfile.Dispenser, into *caddy.Duration) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	return DurationArg(d, opt, into)
}

// DurationArg parses the current token as a duration for option opt.
func DurationArg(d *caddyfile.Dispenser, opt string, into *caddy.Duration) error {
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return d.Errf("%s: bad duration %q: %v", opt, d.Val(), err)
	}
	*into = caddy.Duration(dur)
	return nil
}

// PositiveDuration reads the next argument as a duration above zero for
// option opt: a zero in the config would mean the default.
func PositiveDuration(d *caddyfile.Dispenser, opt string, into *caddy.Duration) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	if err := DurationArg(d, opt, into); err != nil {
		return err
	}
	if *into <= 0 {
		return d.Errf("%s %q: want a positive duration", opt, d.Val())
	}
	return nil
}

// Int reads a whole number.
func Int(d *caddyfile.Dispenser, into *int) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	return IntArg(d, opt, into)
}

// IntArg parses the current token as a whole number for option opt.
func IntArg(d *caddyfile.Dispenser, opt string, into *int) error {
	n, err := strconv.Atoi(d.Val())
	if err != nil {
		return d.Errf("%s: bad number %q: %v", opt, d.Val(), err)
	}
	*into = n
	return nil
}

// IntAtLeast reads a whole number no smaller than least.
func IntAtLeast(d *caddyfile.Dispenser, least int, into *int) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	return IntAtLeastArg(d, opt, least, into)
}

// IntAtLeastArg parses the current token as a whole number no smaller than
// least for option opt.
func IntAtLeastArg(d *caddyfile.Dispenser, opt string, least int, into *int) error {
	n, err := strconv.Atoi(d.Val())
	if err != nil || n < least {
		return d.Errf("%s %q: want a whole number of at least %d", opt, d.Val(), least)
	}
	*into = n
	return nil
}

// Float reads a number such as 0.75.
func Float(d *caddyfile.Dispenser, into *float64) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	f, err := strconv.ParseFloat(d.Val(), 64)
	if err != nil {
		return d.Errf("%s: bad number %q: %v", opt, d.Val(), err)
	}
	*into = f
	return nil
}

// Size reads a positive byte size such as 512KiB or 1MB, and no more
// arguments after it.
func Size(d *caddyfile.Dispenser, into *int64) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	n, err := humanize.ParseBytes(d.Val())
	if err != nil || n == 0 || n > math.MaxInt64 {
		return d.Errf("%s %q: want a positive size such as 1MiB", opt, d.Val())
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	*into = int64(n)
	return nil
}

// Module reads the module an option wraps, "<name> [<args...>] [{ ... }]" from
// namespace, and returns it with its JSON for a field whose module name is
// the inline key inlineKey (e.g. "format"); the caller checks its type.
func Module(d *caddyfile.Dispenser, namespace, inlineKey string) (caddyfile.Unmarshaler, json.RawMessage, error) {
	if !d.NextArg() {
		return nil, nil, d.ArgErr()
	}
	name := d.Val()
	mod, err := caddyfile.UnmarshalModule(d, namespace+"."+name)
	if err != nil {
		return nil, nil, err
	}
	return mod, caddyconfig.JSONModuleObject(mod, inlineKey, name, nil), nil
}

// NoArgs reads a directive that takes no arguments and no block: called
// with the dispenser before the directive's name.
func NoArgs(d *caddyfile.Dispenser) error {
	d.Next()
	name := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("%s: unknown subdirective %q", name, d.Val())
	}
	return nil
}
