package redact

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(Encoder{})
}

// Encoder is Caddy's `filter` log encoder made cheap: the same configuration
// (a wrapped encoder and a filter per field path such as
// request>headers>Authorization), the same lines, but the filters are applied
// while encoding rather than around it.
//
// Why: the filter encoder builds each nested field's path by concatenating
// strings, boxes every value it checks, copies itself into every object it
// enters and clones the wrapped encoder for every line; on the access line of
// every request that was about a tenth of the gateway's allocations
// (bench/README.md). This one keeps the paths as a tree built at provision
// time, so looking a field up allocates nothing, and hands an object with no
// filter below it straight to the wrapped encoder.
type Encoder struct {
	// The encoder lines are written with; default: JSON.
	WrappedRaw json.RawMessage `json:"wrap,omitempty" caddy:"namespace=caddy.logging.encoders inline_key=format"`
	// A filter per field path, as for Caddy's filter encoder; nested
	// fields are named by their parents' keys joined with '>'.
	FieldsRaw map[string]json.RawMessage `json:"fields,omitempty" caddy:"namespace=caddy.logging.encoders.filter inline_key=filter"`

	wrapped zapcore.Encoder
	root    *fieldNode
	// fields writes the logger's context (With) into wrapped, filtered.
	fields redactor
}

// fieldNode is one step of the configured field paths: the filter of the
// path that ends here, if any, and the steps below.
type fieldNode struct {
	filter   logging.LogFieldFilter
	children map[string]*fieldNode
}

func (n *fieldNode) child(key string) *fieldNode {
	if n == nil {
		return nil
	}
	return n.children[key]
}

// CaddyModule returns the Caddy module information.
func (Encoder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.redact",
		New: func() caddy.Module { return new(Encoder) },
	}
}

// Provision loads the wrapped encoder and the filters.
func (e *Encoder) Provision(ctx caddy.Context) error {
	if e.WrappedRaw == nil {
		enc := &logging.JSONEncoder{}
		if err := enc.Provision(ctx); err != nil {
			return fmt.Errorf("log format redact: the JSON encoder: %w", err)
		}
		e.wrapped = enc
	} else {
		val, err := ctx.LoadModule(e, "WrappedRaw")
		if err != nil {
			return fmt.Errorf("log format redact: loading the wrapped encoder: %w", err)
		}
		e.wrapped = val.(zapcore.Encoder)
	}
	vals, err := ctx.LoadModule(e, "FieldsRaw")
	if err != nil {
		return fmt.Errorf("log format redact: loading the field filters: %w", err)
	}
	e.root = &fieldNode{}
	for path, filter := range vals.(map[string]any) {
		n := e.root
		for key := range strings.SplitSeq(path, ">") {
			next := n.children[key]
			if next == nil {
				next = &fieldNode{}
				if n.children == nil {
					n.children = make(map[string]*fieldNode)
				}
				n.children[key] = next
			}
			n = next
		}
		n.filter = filter.(logging.LogFieldFilter)
	}
	e.fields = redactor{node: e.root, enc: e.wrapped}
	return nil
}

// ConfigureDefaultFormat passes the log's writer to the wrapped encoder, as
// the filter encoder does.
func (e *Encoder) ConfigureDefaultFormat(wo caddy.WriterOpener) error {
	if cfd, ok := e.wrapped.(caddy.ConfiguresFormatterDefault); ok {
		return cfd.ConfigureDefaultFormat(wo)
	}
	return nil
}

// UnmarshalCaddyfile takes the filter encoder's syntax:
//
//	format redact {
//	    wrap <encoder>
//	    fields {
//	        <path> <filter> ...
//	    }
//	}
func (e *Encoder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	var fe logging.FilterEncoder
	if err := fe.UnmarshalCaddyfile(d); err != nil {
		return err
	}
	e.WrappedRaw, e.FieldsRaw = fe.WrappedRaw, fe.FieldsRaw
	return nil
}

// Clone is the logger's `With`: the wrapped encoder's clone, into which the
// context fields are then added through the filters.
func (e *Encoder) Clone() zapcore.Encoder {
	c := *e
	c.wrapped = e.wrapped.Clone()
	c.fields.enc = c.wrapped
	return &c
}

// EncodeEntry encodes a line. Its own fields go to the wrapped encoder as
// they are unless a filter applies to them or below them, so the wrapped
// encoder's context is never written to and need not be cloned.
func (e *Encoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	var out []zapcore.Field
	for i, f := range fields {
		n := e.root.child(f.Key)
		if n == nil {
			if out != nil {
				out = append(out, f)
			}
			continue
		}
		if out == nil {
			out = append(make([]zapcore.Field, 0, len(fields)), fields[:i]...)
		}
		switch {
		case n.filter != nil:
			out = append(out, n.filter.Filter(f))
		case f.Type == zapcore.ObjectMarshalerType:
			out = append(out, zap.Object(f.Key, filteredObject{node: n, marshaler: f.Interface.(zapcore.ObjectMarshaler)}))
		default:
			out = append(out, f)
		}
	}
	if out == nil {
		out = fields
	}
	return e.wrapped.EncodeEntry(ent, out)
}

// filteredObject encodes an object whose fields, or fields below them, have
// filters.
type filteredObject struct {
	node      *fieldNode
	marshaler zapcore.ObjectMarshaler
}

func (o filteredObject) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	return o.marshaler.MarshalLogObject(&redactor{node: o.node, enc: enc})
}

// redactor adds fields to enc, each through the filter of its path if it
// has one, as Caddy's filter encoder does (the value passed to a filter is
// zap.Any of it, as there).
type redactor struct {
	node *fieldNode
	enc  zapcore.ObjectEncoder
}

// filterOf is the filter of key, if it has one. Looked up before the value
// is boxed for zap.Any, which allocates: most fields have none.
func (r *redactor) filterOf(key string) logging.LogFieldFilter {
	if n := r.node.child(key); n != nil {
		return n.filter
	}
	return nil
}

// AddObject filters the object as a whole, or the fields inside it, or hands
// it to the wrapped encoder when no filter is at or below its path.
func (r *redactor) AddObject(key string, m zapcore.ObjectMarshaler) error {
	n := r.node.child(key)
	switch {
	case n == nil:
		return r.enc.AddObject(key, m)
	case n.filter != nil:
		n.filter.Filter(zap.Object(key, m)).AddTo(r.enc)
		return nil
	}
	return r.enc.AddObject(key, filteredObject{node: n, marshaler: m})
}

// AddArray filters the array as a whole, not its elements, as Caddy's
// filter encoder does.
func (r *redactor) AddArray(key string, m zapcore.ArrayMarshaler) error {
	if n := r.node.child(key); n != nil && n.filter != nil {
		n.filter.Filter(zap.Array(key, m)).AddTo(r.enc)
		return nil
	}
	return r.enc.AddArray(key, m)
}

func (r *redactor) AddReflected(key string, v any) error {
	if f := r.filterOf(key); f != nil {
		f.Filter(zap.Any(key, v)).AddTo(r.enc)
		return nil
	}
	return r.enc.AddReflected(key, v)
}

func (r *redactor) OpenNamespace(key string) { r.enc.OpenNamespace(key) }

func (r *redactor) AddBinary(k string, v []byte) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddBinary(k, v)
}

func (r *redactor) AddByteString(k string, v []byte) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddByteString(k, v)
}

func (r *redactor) AddBool(k string, v bool) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddBool(k, v)
}

func (r *redactor) AddComplex128(k string, v complex128) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddComplex128(k, v)
}

func (r *redactor) AddComplex64(k string, v complex64) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddComplex64(k, v)
}

func (r *redactor) AddDuration(k string, v time.Duration) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddDuration(k, v)
}

func (r *redactor) AddFloat64(k string, v float64) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddFloat64(k, v)
}

func (r *redactor) AddFloat32(k string, v float32) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddFloat32(k, v)
}

func (r *redactor) AddInt(k string, v int) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddInt(k, v)
}

func (r *redactor) AddInt64(k string, v int64) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddInt64(k, v)
}

func (r *redactor) AddInt32(k string, v int32) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddInt32(k, v)
}

func (r *redactor) AddInt16(k string, v int16) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddInt16(k, v)
}

func (r *redactor) AddInt8(k string, v int8) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddInt8(k, v)
}

func (r *redactor) AddString(k, v string) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddString(k, v)
}

func (r *redactor) AddTime(k string, v time.Time) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddTime(k, v)
}

func (r *redactor) AddUint(k string, v uint) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddUint(k, v)
}

func (r *redactor) AddUint64(k string, v uint64) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddUint64(k, v)
}

func (r *redactor) AddUint32(k string, v uint32) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddUint32(k, v)
}

func (r *redactor) AddUint16(k string, v uint16) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddUint16(k, v)
}

func (r *redactor) AddUint8(k string, v uint8) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddUint8(k, v)
}

func (r *redactor) AddUintptr(k string, v uintptr) {
	if f := r.filterOf(k); f != nil {
		f.Filter(zap.Any(k, v)).AddTo(r.enc)
		return
	}
	r.enc.AddUintptr(k, v)
}

// The zapcore.ObjectEncoder methods of the encoder itself, through which
// `With` adds the logger's context fields (to a clone).

func (e *Encoder) AddObject(k string, m zapcore.ObjectMarshaler) error {
	return e.fields.AddObject(k, m)
}
func (e *Encoder) AddArray(k string, m zapcore.ArrayMarshaler) error { return e.fields.AddArray(k, m) }
func (e *Encoder) AddReflected(k string, v any) error                { return e.fields.AddReflected(k, v) }
func (e *Encoder) OpenNamespace(k string)                            { e.fields.OpenNamespace(k) }
func (e *Encoder) AddBinary(k string, v []byte)                      { e.fields.AddBinary(k, v) }
func (e *Encoder) AddByteString(k string, v []byte)                  { e.fields.AddByteString(k, v) }
func (e *Encoder) AddBool(k string, v bool)                          { e.fields.AddBool(k, v) }
func (e *Encoder) AddComplex128(k string, v complex128)              { e.fields.AddComplex128(k, v) }
func (e *Encoder) AddComplex64(k string, v complex64)                { e.fields.AddComplex64(k, v) }
func (e *Encoder) AddDuration(k string, v time.Duration)             { e.fields.AddDuration(k, v) }
func (e *Encoder) AddFloat64(k string, v float64)                    { e.fields.AddFloat64(k, v) }
func (e *Encoder) AddFloat32(k string, v float32)                    { e.fields.AddFloat32(k, v) }
func (e *Encoder) AddInt(k string, v int)                            { e.fields.AddInt(k, v) }
func (e *Encoder) AddInt64(k string, v int64)                        { e.fields.AddInt64(k, v) }
func (e *Encoder) AddInt32(k string, v int32)                        { e.fields.AddInt32(k, v) }
func (e *Encoder) AddInt16(k string, v int16)                        { e.fields.AddInt16(k, v) }
func (e *Encoder) AddInt8(k string, v int8)                          { e.fields.AddInt8(k, v) }
func (e *Encoder) AddString(k, v string)                             { e.fields.AddString(k, v) }
func (e *Encoder) AddTime(k string, v time.Time)                     { e.fields.AddTime(k, v) }
func (e *Encoder) AddUint(k string, v uint)                          { e.fields.AddUint(k, v) }
func (e *Encoder) AddUint64(k string, v uint64)                      { e.fields.AddUint64(k, v) }
func (e *Encoder) AddUint32(k string, v uint32)                      { e.fields.AddUint32(k, v) }
func (e *Encoder) AddUint16(k string, v uint16)                      { e.fields.AddUint16(k, v) }
func (e *Encoder) AddUint8(k string, v uint8)                        { e.fields.AddUint8(k, v) }
func (e *Encoder) AddUintptr(k string, v uintptr)                    { e.fields.AddUintptr(k, v) }

// Interface guards
var (
	_ zapcore.Encoder       = (*Encoder)(nil)
	_ caddy.Provisioner     = (*Encoder)(nil)
	_ caddyfile.Unmarshaler = (*Encoder)(nil)
	_ zapcore.ObjectEncoder = (*redactor)(nil)
)
