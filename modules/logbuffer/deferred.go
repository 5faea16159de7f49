package logbuffer

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"

	"github.com/lexiscore/gateway/internal/caddyargs"
)

func init() {
	caddy.RegisterModule(Deferred{})
}

// Deferred is a log encoder that encodes a logger's context fields (those
// added by `With`) only when a line is written, with the encoder it wraps.
//
// Why: Caddy gives the HTTP app one logger whose core is a tee of every log
// whose include/exclude rules touch "http" — here the access log, the audit
// log and the default log — and adds each request to it with `WithLazy`
// (zap). Writing the access line forces that `With` on every log of the tee:
// each clones its encoder and encodes the whole request (headers and all),
// although only the access log writes a line. With this encoder, the logs
// that write nothing for the request (the audit and default logs) keep a
// list of fields instead; lines come out byte for byte as the wrapped
// encoder writes them.
type Deferred struct {
	// The encoder lines are written with; default: JSON, or Caddy's
	// console format on a terminal, as for a log without a format.
	WrappedRaw json.RawMessage `json:"wrap,omitempty" caddy:"namespace=caddy.logging.encoders inline_key=format"`

	wrapped          zapcore.Encoder
	wrappedIsDefault bool
	ctx              caddy.Context
	// fields are the context fields, in the order they were added.
	fields []zapcore.Field
}

// CaddyModule returns the Caddy module information.
func (Deferred) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.deferred",
		New: func() caddy.Module { return new(Deferred) },
	}
}

// Provision loads the wrapped encoder.
func (d *Deferred) Provision(ctx caddy.Context) error {
	d.ctx = ctx
	if d.WrappedRaw == nil {
		d.wrapped, d.wrappedIsDefault = &logging.JSONEncoder{}, true
		return d.wrapped.(caddy.Provisioner).Provision(ctx)
	}
	val, err := ctx.LoadModule(d, "WrappedRaw")
	if err != nil {
		return fmt.Errorf("log format deferred: loading the wrapped encoder: %w", err)
	}
	d.wrapped = val.(zapcore.Encoder)
	return nil
}

// ConfigureDefaultFormat picks the console format for a log without a wrapped
// encoder that goes to a terminal, as Caddy does for a log without a format.
func (d *Deferred) ConfigureDefaultFormat(wo caddy.WriterOpener) error {
	if !d.wrappedIsDefault {
		if cfd, ok := d.wrapped.(caddy.ConfiguresFormatterDefault); ok {
			return cfd.ConfigureDefaultFormat(wo)
		}
		return nil
	}
	if caddy.IsWriterStandardStream(wo) && term.IsTerminal(int(os.Stderr.Fd())) {
		console := &logging.ConsoleEncoder{}
		if err := console.Provision(d.ctx); err != nil {
			return fmt.Errorf("log format deferred: the console encoder: %w", err)
		}
		d.wrapped = console
	}
	return nil
}

// Clone is the logger's `With`: the fields so far, nothing encoded.
func (d *Deferred) Clone() zapcore.Encoder {
	c := *d
	c.fields = slices.Clip(d.fields)
	return &c
}

// EncodeEntry encodes a line: the context fields, then the line's own.
func (d *Deferred) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	if len(d.fields) > 0 {
		fields = append(slices.Clip(d.fields), fields...)
	}
	return d.wrapped.EncodeEntry(ent, fields)
}

func (d *Deferred) add(f zapcore.Field) { d.fields = append(d.fields, f) }

// The zapcore.ObjectEncoder methods, through which `With` adds fields: each
// is kept as the field it came from.

func (d *Deferred) AddArray(k string, v zapcore.ArrayMarshaler) error {
	d.add(zap.Array(k, v))
	return nil
}

func (d *Deferred) AddObject(k string, v zapcore.ObjectMarshaler) error {
	d.add(zap.Object(k, v))
	return nil
}

func (d *Deferred) AddBinary(k string, v []byte)          { d.add(zap.Binary(k, v)) }
func (d *Deferred) AddByteString(k string, v []byte)      { d.add(zap.ByteString(k, v)) }
func (d *Deferred) AddBool(k string, v bool)              { d.add(zap.Bool(k, v)) }
func (d *Deferred) AddComplex128(k string, v complex128)  { d.add(zap.Complex128(k, v)) }
func (d *Deferred) AddComplex64(k string, v complex64)    { d.add(zap.Complex64(k, v)) }
func (d *Deferred) AddDuration(k string, v time.Duration) { d.add(zap.Duration(k, v)) }
func (d *Deferred) AddFloat64(k string, v float64)        { d.add(zap.Float64(k, v)) }
func (d *Deferred) AddFloat32(k string, v float32)        { d.add(zap.Float32(k, v)) }
func (d *Deferred) AddInt(k string, v int)                { d.add(zap.Int(k, v)) }
func (d *Deferred) AddInt64(k string, v int64)            { d.add(zap.Int64(k, v)) }
func (d *Deferred) AddInt32(k string, v int32)            { d.add(zap.Int32(k, v)) }
func (d *Deferred) AddInt16(k string, v int16)            { d.add(zap.Int16(k, v)) }
func (d *Deferred) AddInt8(k string, v int8)              { d.add(zap.Int8(k, v)) }
func (d *Deferred) AddString(k, v string)                 { d.add(zap.String(k, v)) }
func (d *Deferred) AddTime(k string, v time.Time)         { d.add(zap.Time(k, v)) }
func (d *Deferred) AddUint(k string, v uint)              { d.add(zap.Uint(k, v)) }
func (d *Deferred) AddUint64(k string, v uint64)          { d.add(zap.Uint64(k, v)) }
func (d *Deferred) AddUint32(k string, v uint32)          { d.add(zap.Uint32(k, v)) }
func (d *Deferred) AddUint16(k string, v uint16)          { d.add(zap.Uint16(k, v)) }
func (d *Deferred) AddUint8(k string, v uint8)            { d.add(zap.Uint8(k, v)) }
func (d *Deferred) AddUintptr(k string, v uintptr)        { d.add(zap.Uintptr(k, v)) }
func (d *Deferred) OpenNamespace(k string)                { d.add(zap.Namespace(k)) }

func (d *Deferred) AddReflected(k string, v any) error {
	d.add(zap.Reflect(k, v))
	return nil
}

// UnmarshalCaddyfile sets up the encoder from Caddyfile tokens. Syntax:
//
//	format deferred {
//		wrap <encoder> [<args...>] [{ ... }]
//	}
func (d *Deferred) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next() // the encoder's name
	if disp.NextArg() {
		return disp.ArgErr()
	}
	for disp.NextBlock(0) {
		if disp.Val() != "wrap" {
			return disp.Errf("log format deferred: unknown option %q", disp.Val())
		}
		mod, raw, err := caddyargs.Module(disp, "caddy.logging.encoders", "format")
		if err != nil {
			return err
		}
		if _, ok := mod.(zapcore.Encoder); !ok {
			return disp.Errf("log format deferred: wrap: %T is not a log encoder", mod)
		}
		d.WrappedRaw = raw
	}
	return nil
}

// Interface guards
var (
	_ zapcore.Encoder                  = (*Deferred)(nil)
	_ caddy.Provisioner                = (*Deferred)(nil)
	_ caddy.ConfiguresFormatterDefault = (*Deferred)(nil)
	_ caddyfile.Unmarshaler            = (*Deferred)(nil)
)
