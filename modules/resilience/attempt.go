package resilience

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/failsafe-go/failsafe-go"
	"go.uber.org/zap"
)

// Causes of the cancellation of an attempt's context.
var (
	// errRouteTimeout: the request's timeout passed before a response began.
	errRouteTimeout = errors.New("request timeout")
	// errAttemptTimeout: the attempt's timeout passed before a response began.
	errAttemptTimeout = errors.New("attempt timeout")
	// errHedgeLost: another attempt of the same request answered first.
	errHedgeLost = errors.New("another attempt answered first")
)

// errLostRace is what a hedged attempt's writes return once another attempt
// has started answering the client.
var errLostRace = errors.New("another attempt is answering the client")

// errNoResponse is an attempt that ended without an error and without
// writing anything.
var errNoResponse = errors.New("upstream attempt produced no response")

// errFailureTooLarge is what a held-back failure response's writes return
// once its body outgrows max_failure_body: the proxy stops copying it.
var errFailureTooLarge = errors.New("failure response body exceeds max_failure_body")

// errAborted is an attempt whose handler aborted the response with
// http.ErrAbortHandler (reverse_proxy does when the copy of a body fails).
var errAborted = errors.New("upstream response aborted")

// timedOut reports whether ctx was canceled by one of the handler's
// timeouts, as opposed to the client leaving or a hedge winning.
func timedOut(ctx context.Context) bool {
	cause := context.Cause(ctx)
	return errors.Is(cause, errAttemptTimeout) || errors.Is(cause, errRouteTimeout)
}

// outcome is how one attempt ended: the result type of the failsafe-go
// policies.
type outcome struct {
	kind kind
	// status and retryAfter describe a held-back failure response;
	// retryAfter is -1 when the upstream sent none.
	status     int
	retryAfter time.Duration
	// openWait is, for kindOpen, how long until a breaker lets a probe
	// through.
	openWait time.Duration
	// deadline is when the whole request times out.
	deadline time.Time
	// err is reverse_proxy's error for the attempt, if any.
	err error
	run *attemptRun
}

// attemptRun is one call of the next handler.
type attemptRun struct {
	aw  *attemptWriter
	err error
	// aborted: the handler aborted the response (panic(http.ErrAbortHandler)).
	aborted bool
	// detach frees a committed attempt from the timeouts and from failsafe
	// cancellation: from then on only the client can stop it.
	detach func()
}

// infoKey is the context key of an attempt's *attemptInfo.
type infoKey struct{}

// attemptInfo travels in the context of one attempt, from the resilience
// handler to the selection policy and the transport below it. All its
// methods accept a nil receiver (no resilience handler in the route).
type attemptInfo struct {
	x      *exchange
	number int

	mu       sync.Mutex
	lastOpen bool
	openWait time.Duration
}

func infoFrom(ctx context.Context) *attemptInfo {
	i, _ := ctx.Value(infoKey{}).(*attemptInfo)
	return i
}

// attempt is the attempt's number: 0 for the first, then retries and hedges.
func (i *attemptInfo) attempt() int {
	if i == nil {
		return 0
	}
	return i.number
}

// noteOpen records that the load balancer met an open breaker.
func (i *attemptInfo) noteOpen(upstream string, wait time.Duration) {
	if i == nil {
		return
	}
	i.mu.Lock()
	if !i.lastOpen || wait < i.openWait {
		i.openWait = wait
	}
	i.lastOpen = true
	i.mu.Unlock()
	i.x.markFailed(upstream)
}

// noteUpstream records the upstream an attempt goes to and its breaker state.
func (i *attemptInfo) noteUpstream(upstream, breakerState string) {
	if i == nil {
		return
	}
	i.x.mu.Lock()
	i.x.upstream, i.x.breakerState = upstream, breakerState
	i.x.mu.Unlock()
}

// logFields are the access log fields of the exchange once its attempts ended.
func (x *exchange) logFields() []zap.Field {
	x.mu.Lock()
	defer x.mu.Unlock()
	return []zap.Field{
		zap.String("route", x.h.Route),
		zap.Int32("attempts", x.attempts.Load()),
		zap.String("upstream", x.upstream),
		zap.String("breaker_state", x.breakerState),
	}
}

// noteSent records that the request went out to an upstream.
func (i *attemptInfo) noteSent() {
	if i == nil {
		return
	}
	i.mu.Lock()
	i.lastOpen = false
	i.mu.Unlock()
}

// noteFailed records that upstream failed this request, so that retries and
// failover prefer the others.
func (i *attemptInfo) noteFailed(upstream string) {
	if i != nil {
		i.x.markFailed(upstream)
	}
}

// route is the name of the request's route; empty outside a resilience
// handler.
func (i *attemptInfo) route() string {
	if i == nil {
		return ""
	}
	return i.x.h.Route
}

// avoid reports whether upstream already failed this request.
func (i *attemptInfo) avoid(upstream string) bool {
	return i != nil && i.x.failed(upstream)
}

// anyFailed reports whether some upstream already failed this request.
func (i *attemptInfo) anyFailed() bool {
	if i == nil {
		return false
	}
	i.x.mu.Lock()
	defer i.x.mu.Unlock()
	return len(i.x.failedUps) > 0
}

// body returns the request body when the handler kept all of it, else nil.
func (i *attemptInfo) body() []byte {
	if i == nil || !i.x.hasBody || i.x.rest != nil {
		return nil
	}
	return i.x.body
}

// open returns whether the last try met an open breaker, and the shortest
// wait of the open breakers met.
func (i *attemptInfo) open() (bool, time.Duration) {
	if i == nil {
		return false, 0
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.lastOpen, i.openWait
}

// exchange is one client request going through the resilience handler.
type exchange struct {
	h *Handler
	w http.ResponseWriter
	r *http.Request
	// header is the client response's header before any attempt: what a
	// failed attempt's header changes are undone to, and what concurrent
	// (hedged) attempts start their own maps from.
	header   http.Header
	deadline time.Time
	// stopTimeout stops the request's timeout once a response began.
	stopTimeout func() bool
	// hedged: attempts may run concurrently.
	hedged bool
	// body is the request body kept for replay; rest, when not nil, is the
	// part that did not fit, so the body can be sent only once.
	body    []byte
	hasBody bool
	rest    io.Reader
	// cached: the route has a stale cache and this is a GET or HEAD,
	// whose key is cacheKey.
	cached   bool
	cacheKey uint64

	attempts atomic.Int32
	claimed  atomic.Bool
	// wg counts hedged attempts still running.
	wg sync.WaitGroup

	mu        sync.Mutex
	failedUps []string
	// upstream and breakerState are the last attempt's, for the access log.
	upstream, breakerState string
	last                   *outcome
	winner                 *attemptRun
	// running are the hedged attempts in flight, to cancel when one wins.
	running map[*attemptRun]context.CancelCauseFunc
}

func (x *exchange) markFailed(upstream string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, u := range x.failedUps {
		if u == upstream {
			return
		}
	}
	x.failedUps = append(x.failedUps, upstream)
}

func (x *exchange) failed(upstream string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, u := range x.failedUps {
		if u == upstream {
			return true
		}
	}
	return false
}

func (x *exchange) setLast(o *outcome) {
	x.mu.Lock()
	x.last = o
	x.mu.Unlock()
}

func (x *exchange) lastOutcome() *outcome {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.last
}

// commit records the attempt answering the client and cancels the others.
func (x *exchange) commit(run *attemptRun) {
	run.detach()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.winner = run
	for other, cancel := range x.running {
		if other != run {
			cancel(errHedgeLost)
		}
	}
}

func (x *exchange) committed() *attemptRun {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.winner
}

// withTimeout returns the context of the attempts to come: canceled with
// errRouteTimeout once d has passed, unless a response began before (the
// committing attempt stops the timer). done releases it.
func (x *exchange) withTimeout(d time.Duration) (ctx context.Context, done func()) {
	x.deadline = x.h.now().Add(d)
	ctx, cancel := context.WithCancelCause(x.r.Context())
	timer := time.AfterFunc(d, func() { cancel(errRouteTimeout) })
	x.stopTimeout = timer.Stop
	return ctx, func() {
		timer.Stop()
		cancel(nil)
	}
}

// requestBody returns the body for the next attempt.
func (x *exchange) requestBody() io.ReadCloser {
	if x.rest != nil {
		return io.NopCloser(io.MultiReader(bytes.NewReader(x.body), x.rest))
	}
	return io.NopCloser(bytes.NewReader(x.body))
}

// attempt calls next once, as the function the failsafe-go policies
// execute. The attempt's context carries the request's values and the
// client's cancellation; the policies' cancellation (a retry or hedge
// ending) and the timeouts reach it only until a response begins, so that
// they bound the wait for an answer and never cut a response that is being
// delivered.
func (x *exchange) attempt(exec failsafe.Execution[*outcome], next caddyhttp.Handler) (*outcome, error) {
	if x.hedged {
		x.wg.Add(1)
		defer x.wg.Done()
	}
	if x.claimed.Load() {
		// A hedge that started as another attempt began answering.
		return &outcome{kind: kindCanceled, retryAfter: -1}, nil
	}
	actx, cancel := context.WithCancelCause(x.r.Context())
	defer cancel(nil)
	stopPolicy := context.AfterFunc(exec.Context(), func() { cancel(context.Cause(exec.Context())) })
	defer stopPolicy()
	var timer *time.Timer
	if d := time.Duration(x.h.AttemptTimeout); d > 0 {
		timer = time.AfterFunc(d, func() { cancel(errAttemptTimeout) })
		defer timer.Stop()
	}
	run := &attemptRun{detach: func() {
		stopPolicy()
		if timer != nil {
			timer.Stop()
		}
		x.stopTimeout()
	}}
	if x.hedged {
		x.mu.Lock()
		if x.running == nil {
			x.running = map[*attemptRun]context.CancelCauseFunc{}
		}
		x.running[run] = cancel
		x.mu.Unlock()
		defer func() {
			x.mu.Lock()
			delete(x.running, run)
			x.mu.Unlock()
		}()
	}

	info := &attemptInfo{x: x, number: int(x.attempts.Add(1)) - 1}
	ctx := context.WithValue(actx, infoKey{}, info)
	// reverse_proxy writes to the request's variables, and its transport
	// reads them in a dial goroutine that can outlive a canceled attempt:
	// each attempt gets its own copy, so neither a concurrent (hedged) one
	// nor the next one writes a map a straggler reads. The request sees the
	// variables of its last sequential attempt, copied back here.
	vars, hasVars := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any)
	var attemptVars map[string]any
	if hasVars {
		attemptVars = maps.Clone(vars)
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, attemptVars)
		if !x.hedged {
			defer maps.Copy(vars, attemptVars)
		}
	}
	req := x.r.WithContext(ctx)
	if x.hasBody {
		req.Body = x.requestBody()
	}
	run.aw = &attemptWriter{x: x, run: run, ctx: ctx}
	if x.hedged {
		run.aw.header = x.header.Clone()
	} else {
		run.aw.header, run.aw.direct = x.w.Header(), true
	}
	run.serve(next, req)
	if run.aw.claimed {
		return &outcome{kind: kindCommitted, run: run}, nil
	}
	run.aw.takeBack()

	o := &outcome{retryAfter: -1, deadline: x.deadline, run: run, err: run.err}
	lastOpen, openWait := info.open()
	switch {
	case actx.Err() != nil && timedOut(actx):
		o.kind, o.err = kindTimeout, context.Cause(actx)
	case actx.Err() != nil:
		o.kind, o.err = kindCanceled, caddyhttp.Error(499, context.Cause(actx))
	case run.aw.tooLarge:
		// A failure all the same: retried or replaced as its status says,
		// but never passed on (Handler.failed).
		o.kind, o.status = kindStatus, run.aw.status
		o.err = fmt.Errorf("upstream answered %d: %w (%d bytes)", run.aw.status, errFailureTooLarge, x.h.MaxFailureBody)
		x.h.logger.Warn("upstream failure response dropped: its body exceeds max_failure_body",
			zap.String("route", x.h.Route), zap.Int("status", run.aw.status), zap.Int64("max_failure_body", x.h.MaxFailureBody))
	case run.err != nil:
		o.kind = classify(run.err, actx, lastOpen)
		o.openWait = openWait
	case run.aw.status == 0:
		o.kind, o.err = kindTransport, errNoResponse
	default:
		o.kind, o.status = kindStatus, run.aw.status
	}
	if o.kind == kindStatus {
		if d, ok := parseRetryAfter(run.aw.header.Get("Retry-After"), x.h.now()); ok {
			o.retryAfter = d
		}
	}
	x.setLast(o)
	return o, nil
}

// serve calls next for the attempt. reverse_proxy aborts a response whose
// body it cannot copy to the end with panic(http.ErrAbortHandler): the
// upstream's connection died, the attempt was canceled, or a held-back
// failure outgrew max_failure_body. For an attempt that is not answering
// the client that is an attempt failure like any other, to retry or
// replace; a committed one is aborted again by Handler.delivered, in the
// request's goroutine (a hedge runs in its own) and after the request's
// permit is released.
func (run *attemptRun) serve(next caddyhttp.Handler, req *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			run.aborted, run.err = true, caddyhttp.Error(http.StatusBadGateway, errAborted)
		}
	}()
	run.err = next.ServeHTTP(run.aw, req)
}

// attemptWriter is the response writer of one attempt. One attempt at a
// time writes its header changes straight into the client's header map
// (direct), and a failed one's are taken back afterwards; concurrent
// (hedged) attempts each have a map of their own. Either way a failed
// attempt leaves no trace on the client's response. The first attempt to
// write a response status that is not held back claims the client's
// writer; later ones lose.
//
// Failure responses are held back, body included, up to max_failure_body:
// they may be retried or replaced. One whose body outgrows it is dropped
// at once (tooLarge), so a backend cannot make the gateway hold more.
type attemptWriter struct {
	x   *exchange
	run *attemptRun
	ctx context.Context

	header  http.Header
	direct  bool
	claimed bool
	lost    bool
	// status is the final status written; held, that the response is held
	// back in body; tooLarge, that its body outgrew the cap and was dropped.
	status   int
	held     bool
	body     bytes.Buffer
	tooLarge bool
	// capture keeps a copy of a good GET response for the stale cache.
	capture *bytes.Buffer
}

// holds reports whether a response with status is held back: failure
// responses (they may be retried or replaced) and anything written after
// the attempt was canceled. Every other response streams straight through.
func (a *attemptWriter) holds(status int) bool {
	return status >= 500 || a.x.h.rules.statuses[status] || a.ctx.Err() != nil
}

func (a *attemptWriter) Header() http.Header { return a.header }

// takeBack ends direct writing for a failed attempt: its headers move to a
// map of its own (to pass the failure on, or to read Retry-After) and the
// client's header map is what it was before the attempt.
func (a *attemptWriter) takeBack() {
	if !a.direct {
		return
	}
	a.header, a.direct = a.header.Clone(), false
	replaceHeader(a.x.w.Header(), a.x.header.Clone())
}

func (a *attemptWriter) WriteHeader(status int) {
	if a.status != 0 {
		return
	}
	if status < 200 {
		// Informational responses go out as they come, except while
		// hedges race for the writer.
		if status != http.StatusSwitchingProtocols && a.direct {
			a.x.w.WriteHeader(status)
		}
		return
	}
	a.status = status
	if a.holds(status) {
		a.held = true
		return
	}
	a.claim(status)
}

// claim makes this attempt the one answering the client, unless another
// already is, and writes the status.
func (a *attemptWriter) claim(status int) {
	if !a.x.claimed.CompareAndSwap(false, true) {
		a.lost = true
		return
	}
	a.claimed = true
	a.x.commit(a.run)
	if !a.direct {
		replaceHeader(a.x.w.Header(), a.header)
	}
	if status == http.StatusOK && a.x.cached && a.x.r.Method == http.MethodGet {
		a.capture = new(bytes.Buffer)
	}
	a.x.w.WriteHeader(status)
}

func (a *attemptWriter) Write(p []byte) (int, error) {
	if a.status == 0 {
		a.WriteHeader(http.StatusOK)
	}
	switch {
	case a.tooLarge:
		return 0, errFailureTooLarge
	case a.held && int64(a.body.Len()+len(p)) > a.x.h.MaxFailureBody:
		a.tooLarge, a.body = true, bytes.Buffer{}
		return 0, errFailureTooLarge
	case a.held:
		return a.body.Write(p)
	case a.lost:
		return 0, errLostRace
	}
	if a.capture != nil {
		if a.capture.Len()+len(p) > a.x.h.staleMaxBody {
			a.capture = nil
		} else {
			a.capture.Write(p)
		}
	}
	return a.x.w.Write(p)
}

// FlushError flushes a streaming response to the client.
func (a *attemptWriter) FlushError() error {
	if !a.claimed {
		return nil
	}
	return http.NewResponseController(a.x.w).Flush()
}

// passOn answers the client with the held-back failure response.
func (a *attemptWriter) passOn() error {
	a.held = false
	a.claim(a.status)
	_, err := a.Write(a.body.Bytes())
	return err
}

// replaceHeader makes dst a copy of src.
func replaceHeader(dst, src http.Header) {
	clear(dst)
	for k, v := range src {
		dst[k] = v
	}
}
