package framing

import (
	"bytes"
	"net/http"
)

// Why a request is refused; also the values of the metric's reason label.
const (
	// ReasonCLTE: Content-Length and Transfer-Encoding together (RFC 9112
	// §6.1: a smuggling attempt, or a broken client).
	ReasonCLTE = "cl_te"
	// ReasonTEHTTP10: Transfer-Encoding in a request older than HTTP/1.1
	// (HTTP/1.0 in practice), whose framing RFC 9112 §6.1 says to treat as
	// faulty; net/http ignores the field there.
	ReasonTEHTTP10 = "te_http10"
	// ReasonBareCR: a CR not followed by LF in the request line or a header
	// (RFC 9112 §2.2).
	ReasonBareCR = "bare_cr"
	// ReasonHeadTooLarge: a request line and header block over maxHead.
	ReasonHeadTooLarge = "head_too_large"
)

// maxHead bounds the bytes of one request line and header block held until it
// is judged: net/http's default header limit (DefaultMaxHeaderBytes), which
// Caddy keeps unless max_header_size is set. A larger head is refused (431)
// instead of being held.
const maxHead = 1 << 20

// maxChunkLine is one more than the longest chunk-size line net/http reads
// (its 4 KiB buffer): a longer one fails there first.
const maxChunkLine = 4096 + 2

// maxTrailer bounds the trailer section after the last chunk: net/http only
// reads one that fits its 4 KiB buffer.
const maxTrailer = 4096

// action is what the tracker decided about the bytes it consumed.
type action int

const (
	// actNone: keep going; held head bytes stay held.
	actNone action = iota
	// actRelease: the held head is sound; deliver it.
	actRelease
	// actReject: the held head is refused (tracker.reason); never deliver it.
	actReject
	// actOpaque: no longer HTTP/1.x (the HTTP/2 preface); deliver the held
	// head and everything after it untouched.
	actOpaque
	// actEnd: net/http refuses this message by itself (an unsupported or
	// broken framing it detects); deliver what was consumed, then end the
	// stream so that nothing after it is ever read as a request.
	actEnd
)

type phase int

const (
	phaseHead phase = iota
	phaseBody
	phaseChunkLine
	phaseChunkData
	phaseChunkEnd
	phaseTrailer
)

// field names the header fields the tracker reads.
type field int

const (
	fieldOther field = iota
	fieldContentLength
	fieldTransferEncoding
	fieldHost
	fieldRequestID
	fieldUpgrade
)

// tracker follows HTTP/1.x request framing in a raw byte stream the way
// net/http reads it: the request line and header block (held until judged),
// then a body by Content-Length or chunked coding, with trailers. It reads
// only framing; net/http still parses everything. It is not safe for
// concurrent use.
type tracker struct {
	phase phase
	// head holds the bytes of the current request line and header block.
	head      []byte
	lineStart int
	// pendingCR: the last byte of head is a CR whose successor is not read yet.
	pendingCR bool

	sawRequestLine bool
	method, target []byte
	beforeHTTP11   bool
	tunnel         bool

	field      field
	fieldValue []byte
	// foldWithoutField: a continuation line before any field, which net/http
	// refuses.
	foldWithoutField bool
	malformedLine    bool
	sawField         bool

	clCount, teCount, hostCount int
	// The values of the fields read; their buffers serve one request after
	// another.
	cl, te, host, requestID []byte

	reason    string
	remaining uint64
	line      []byte
	excess    int64
	crlf      int
	trailer   int
}

// consume reads the next bytes of d. It returns how many it used, whether
// those were held in t.head (a head not judged yet) rather than deliverable,
// and its decision.
func (t *tracker) consume(d []byte) (used int, held bool, act action) {
	switch t.phase {
	case phaseHead:
		used, act = t.scanHead(d)
		return used, true, act
	case phaseBody:
		n := min(t.remaining, uint64(len(d)))
		t.remaining -= n
		if t.remaining == 0 {
			t.phase = phaseHead
		}
		return int(n), false, actNone
	case phaseChunkData:
		n := min(t.remaining, uint64(len(d)))
		t.remaining -= n
		if t.remaining == 0 {
			t.phase, t.crlf = phaseChunkEnd, 0
		}
		return int(n), false, actNone
	case phaseChunkEnd:
		if d[0] != "\r\n"[t.crlf] {
			return 0, false, actEnd
		}
		if t.crlf++; t.crlf == 2 {
			t.phase, t.line = phaseChunkLine, t.line[:0]
		}
		return 1, false, actNone
	case phaseChunkLine:
		return t.scanChunkLine(d)
	default:
		return t.scanTrailer(d)
	}
}

// scanHead adds bytes of d to the head up to the end of a line, and judges
// the line.
func (t *tracker) scanHead(d []byte) (int, action) {
	used := 0
	for used < len(d) {
		if t.pendingCR {
			t.pendingCR = false
			if d[used] != '\n' {
				return t.reject(ReasonBareCR, used+1)
			}
		}
		seg := d[used:]
		lf := bytes.IndexByte(seg, '\n')
		if lf >= 0 {
			seg = seg[:lf+1]
		}
		// seg holds at most one LF, at its end: its first CR is sound
		// only right before that LF, or last, its successor not read yet.
		if i := bytes.IndexByte(seg, '\r'); i == len(seg)-1 {
			t.pendingCR = true
		} else if i >= 0 && seg[i+1] != '\n' {
			return t.reject(ReasonBareCR, used+i+2)
		}
		if len(t.head)+len(seg) > maxHead {
			return t.reject(ReasonHeadTooLarge, used+len(seg))
		}
		t.head = append(t.head, seg...)
		used += len(seg)
		if lf < 0 {
			return used, actNone
		}
		if act := t.endLine(); act != actNone {
			return used, act
		}
	}
	return used, actNone
}

func (t *tracker) reject(reason string, used int) (int, action) {
	t.reason = reason
	return used, actReject
}

// endLine reads the line that ends the head so far.
func (t *tracker) endLine() action {
	line := t.head[t.lineStart : len(t.head)-1]
	line = bytes.TrimSuffix(line, []byte{'\r'})
	t.lineStart = len(t.head)
	switch {
	case !t.sawRequestLine:
		if len(line) == 0 {
			return actNone
		}
		t.sawRequestLine = true
		return t.requestLine(line)
	case len(line) == 0:
		t.endField()
		return t.judge()
	case line[0] == ' ' || line[0] == '\t':
		if !t.sawField {
			t.foldWithoutField = true
		}
		if t.field != fieldOther {
			t.fieldValue = append(append(t.fieldValue, ' '), trimOWS(line)...)
		}
		return actNone
	}
	t.endField()
	name, value, ok := bytes.Cut(line, []byte{':'})
	if !ok {
		t.malformedLine = true
		return actNone
	}
	t.field = fieldOf(name)
	switch t.field {
	case fieldContentLength:
		t.clCount++
	case fieldTransferEncoding:
		t.teCount++
	case fieldHost:
		t.hostCount++
	case fieldUpgrade:
		t.tunnel = true
	}
	t.sawField = true
	t.fieldValue = append(t.fieldValue[:0], trimOWS(value)...)
	return actNone
}

func fieldOf(name []byte) field {
	for _, f := range fieldNames {
		if bytes.EqualFold(name, f.name) {
			return f.field
		}
	}
	return fieldOther
}

var fieldNames = []struct {
	name  []byte
	field field
}{
	{[]byte("Content-Length"), fieldContentLength},
	{[]byte("Transfer-Encoding"), fieldTransferEncoding},
	{[]byte("Host"), fieldHost},
	{[]byte("X-Request-Id"), fieldRequestID},
	{[]byte("Upgrade"), fieldUpgrade},
}

// endField records the value of the field the last lines belonged to, folded
// lines joined as net/http joins them.
func (t *tracker) endField() {
	if t.field == fieldOther || t.field == fieldUpgrade {
		t.field = fieldOther
		return
	}
	v := trimOWS(t.fieldValue)
	switch t.field {
	case fieldContentLength:
		if t.clCount == 1 {
			t.cl = append(t.cl[:0], v...)
		} else if !bytes.Equal(v, t.cl) {
			// net/http refuses differing copies.
			t.malformedLine = true
		}
	case fieldTransferEncoding:
		t.te = append(t.te[:0], v...)
	case fieldHost:
		t.host = append(t.host[:0], v...)
	case fieldRequestID:
		t.requestID = append(t.requestID[:0], v...)
	}
	t.field = fieldOther
}

// requestLine reads "METHOD target HTTP/x.y". The method and target are
// kept as slices of the head: appends to it leave these bytes as they are.
func (t *tracker) requestLine(line []byte) action {
	method, rest, _ := bytes.Cut(line, []byte{' '})
	target, proto, _ := bytes.Cut(rest, []byte{' '})
	if string(method) == "PRI" && string(target) == "*" && string(proto) == "HTTP/2.0" {
		return actOpaque
	}
	t.method, t.target = method, target
	// net/http's own reading of the version, HTTP/0.x included.
	major, minor, ok := http.ParseHTTPVersion(string(proto))
	t.beforeHTTP11 = ok && (major < 1 || major == 1 && minor < 1)
	return actNone
}

// judge decides about a complete head and sets up reading its body.
func (t *tracker) judge() action {
	switch {
	case t.teCount > 0 && t.clCount > 0:
		t.reason = ReasonCLTE
		return actReject
	case t.teCount > 0 && t.beforeHTTP11:
		t.reason = ReasonTEHTTP10
		return actReject
	case t.foldWithoutField || t.malformedLine:
		return actEnd
	case t.teCount > 0:
		// net/http reads only one Transfer-Encoding, "chunked"; it answers
		// anything else with 501 and closes.
		if t.teCount != 1 || !bytes.EqualFold(t.te, []byte("chunked")) {
			return actEnd
		}
		t.phase, t.line, t.excess = phaseChunkLine, t.line[:0], 0
	case t.clCount > 0:
		n, ok := parseLength(t.cl)
		if !ok {
			return actEnd
		}
		if n > 0 {
			t.phase, t.remaining = phaseBody, n
		}
	}
	return actRelease
}

// takeHead returns the judged head and starts on the next one. The slice is
// valid until the next call to consume.
func (t *tracker) takeHead() []byte {
	h := t.head
	t.resetHead()
	return h
}

func (t *tracker) resetHead() {
	*t = tracker{
		phase: t.phase, remaining: t.remaining, line: t.line,
		head: reuse(t.head), fieldValue: reuse(t.fieldValue),
		cl: reuse(t.cl), te: reuse(t.te), host: reuse(t.host), requestID: reuse(t.requestID),
	}
}

// reuse empties b for the next request, unless it is large: one large head
// does not pin its buffers for the connection's life.
func reuse(b []byte) []byte {
	if cap(b) > 64<<10 {
		return nil
	}
	return b[:0]
}

// scanChunkLine reads a chunk-size line the way net/http does: CRLF-ended,
// no other CR, an optional extension after ';', at most 16 hex digits, and
// no more than its allowance of non-data bytes.
func (t *tracker) scanChunkLine(d []byte) (int, bool, action) {
	lf := bytes.IndexByte(d, '\n')
	seg := d
	if lf >= 0 {
		seg = d[:lf+1]
	}
	if len(t.line)+len(seg) > maxChunkLine {
		return 0, false, actEnd
	}
	t.line = append(t.line, seg...)
	if lf < 0 {
		return len(seg), false, actNone
	}
	line := t.line
	if !crlfEnded(line) {
		return 0, false, actEnd
	}
	line = line[:len(line)-2]
	t.excess += int64(len(line)) + 2
	line = bytes.TrimRight(line, " \t")
	line, _, _ = bytes.Cut(line, []byte{';'})
	n, ok := parseHex(line)
	if !ok {
		return 0, false, actEnd
	}
	t.excess = max(t.excess-16-2*int64(n), 0)
	if t.excess > 16<<10 {
		return 0, false, actEnd
	}
	if n == 0 {
		t.phase, t.line, t.trailer = phaseTrailer, t.line[:0], 0
	} else {
		t.phase, t.remaining = phaseChunkData, n
	}
	return len(seg), false, actNone
}

// scanTrailer reads the trailer section up to its empty line, lines ended
// by LF or CRLF as net/http's header reader takes them.
func (t *tracker) scanTrailer(d []byte) (int, bool, action) {
	lf := bytes.IndexByte(d, '\n')
	seg := d
	if lf >= 0 {
		seg = d[:lf+1]
	}
	if t.trailer += len(seg); t.trailer > maxTrailer {
		return 0, false, actEnd
	}
	t.line = append(t.line, seg...)
	if lf < 0 {
		return len(seg), false, actNone
	}
	if line := bytes.TrimSuffix(t.line[:len(t.line)-1], []byte{'\r'}); len(line) == 0 {
		t.phase = phaseHead
	}
	t.line = t.line[:0]
	return len(seg), false, actNone
}

// crlfEnded reports whether line ends with CRLF and has no other CR.
func crlfEnded(line []byte) bool {
	return len(line) >= 2 && bytes.IndexByte(line, '\r') == len(line)-2
}

// parseLength reads a Content-Length value as net/http does
// (strconv.ParseUint(v, 10, 63)): decimal digits only, below 2^63.
func parseLength(v []byte) (uint64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n uint64
	for _, b := range v {
		if b < '0' || b > '9' || n > (1<<63-1-uint64(b-'0'))/10 {
			return 0, false
		}
		n = n*10 + uint64(b-'0')
	}
	return n, true
}

func parseHex(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 16 {
		return 0, false
	}
	var n uint64
	for _, b := range v {
		var d byte
		switch {
		case '0' <= b && b <= '9':
			d = b - '0'
		case 'a' <= b && b <= 'f':
			d = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			d = b - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(d)
	}
	return n, true
}

func trimOWS(b []byte) []byte { return bytes.Trim(b, " \t") }
