package ratelimit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/common"
)

// batchCounter is a limiter.Store that counts all the hits of one request
// in one exchange with the store, rather than one call per hit.
type batchCounter interface {
	limiter.Store
	// countAll sets out[i] for each hit the store answered and returns the
	// first error. It returns when ctx is done, whatever the store does.
	countAll(ctx context.Context, hits []hit, out []answer) error
}

// redisCounter is the Redis store: limiter's own, whose two Lua scripts it
// runs for every hit of a request at once. The calls are queued together on
// go-redis's deferred autopipeliner (shared with concurrent requests) or, with
// pipelining off, sent as one pipeline, then awaited under the caller's
// context: no goroutine per hit, at most one round trip per request.
type redisCounter struct {
	// Store is limiter's Redis store, which loaded the scripts.
	limiter.Store
	client redis.UniversalClient
	// pipeliner is nil when pipelining is off.
	pipeliner  *redis.AutoPipeliner
	prefix     string
	incr, peek *redis.Script
}

// newRedisCounter takes the scripts limiter's store loaded through scripts.
func newRedisCounter(store limiter.Store, client redis.UniversalClient, pipeliner *redis.AutoPipeliner, prefix string, scripts []string) (*redisCounter, error) {
	c := &redisCounter{Store: store, client: client, pipeliner: pipeliner, prefix: prefix}
	for _, s := range scripts {
		// limiter's increment script is the one that writes.
		if strings.Contains(s, "incrby") {
			c.incr = redis.NewScript(s)
		} else {
			c.peek = redis.NewScript(s)
		}
	}
	if c.incr == nil || c.peek == nil {
		return nil, fmt.Errorf("limiter's redis store loaded %d scripts: want its increment and peek scripts", len(scripts))
	}
	return c, nil
}

// countAll runs the hits' scripts together. Scripts Redis no longer has (it
// restarted or they were flushed) are loaded and those hits sent again, once.
func (c *redisCounter) countAll(ctx context.Context, hits []hit, out []answer) error {
	cmds := make([]*redis.Cmd, len(hits))
	for i, h := range hits {
		cmds[i] = c.command(ctx, h)
	}
	done, err := c.send(ctx, cmds)
	if err == nil {
		var gone []int
		for i, cmd := range cmds {
			// HasErrorPrefix allocates: only for a command that failed.
			if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				gone = append(gone, i)
			}
		}
		if len(gone) > 0 {
			err = c.resend(ctx, hits, cmds, gone)
		}
	}
	now := time.Now()
	for i, cmd := range cmds[:done] {
		lc, perr := result(cmd, hits[i].rate, now)
		if perr != nil {
			err = cmp.Or(err, perr)
			continue
		}
		out[i] = answer{lc, true}
	}
	return err
}

// resend loads the scripts and sends the hits at gone again.
func (c *redisCounter) resend(ctx context.Context, hits []hit, cmds []*redis.Cmd, gone []int) error {
	for _, s := range []*redis.Script{c.incr, c.peek} {
		if err := s.Load(ctx, c.client).Err(); err != nil {
			return fmt.Errorf("loading limiter's scripts: %w", err)
		}
	}
	again := make([]*redis.Cmd, len(gone))
	for j, i := range gone {
		again[j] = c.command(ctx, hits[i])
	}
	if _, err := c.send(ctx, again); err != nil {
		// Hits not answered in time have no result: drop them all, as
		// results of the first round would be read as answers.
		for _, i := range gone {
			cmds[i] = redis.NewCmd(ctx)
			cmds[i].SetErr(err)
		}
		return err
	}
	for j, i := range gone {
		cmds[i] = again[j]
	}
	return nil
}

// command is limiter's Get (the increment script) or Peek for h.
func (c *redisCounter) command(ctx context.Context, h hit) *redis.Cmd {
	key := c.prefix + ":" + h.key
	var cmd *redis.Cmd
	if h.peek {
		cmd = redis.NewCmd(ctx, "evalsha", c.peek.Hash(), 1, key)
	} else {
		cmd = redis.NewCmd(ctx, "evalsha", c.incr.Hash(), 1, key, 1, h.rate.Period.Milliseconds())
	}
	cmd.SetFirstKeyPos(3)
	return cmd
}

// send queues cmds together and waits for them until ctx is done. It
// returns how many, from the first, have their result; a command's own
// error (a Redis error reply, a broken connection) is in the command.
func (c *redisCounter) send(ctx context.Context, cmds []*redis.Cmd) (int, error) {
	if c.pipeliner == nil {
		pipe := c.client.Pipeline()
		for _, cmd := range cmds {
			_ = pipe.Process(ctx, cmd)
		}
		// Every command carries its own error; with the context's
		// deadline on the socket, Exec returns by then.
		_, _ = pipe.Exec(ctx)
		return len(cmds), nil
	}
	futures := make([]redis.AutoFuture, len(cmds))
	for i, cmd := range cmds {
		futures[i] = c.pipeliner.Submit(ctx, cmd)
	}
	for i, f := range futures {
		if err := f.WaitContext(ctx); err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return i, err
		}
	}
	return len(cmds), nil
}

// result reads a script's {count, ttl in ms} as limiter's store does.
func result(cmd *redis.Cmd, rate limiter.Rate, now time.Time) (limiter.Context, error) {
	v, err := cmd.Result()
	if err != nil {
		return limiter.Context{}, err
	}
	fields, ok := v.([]any)
	if !ok || len(fields) != 2 {
		return limiter.Context{}, fmt.Errorf("limiter script answered %v: want count and ttl", v)
	}
	count, ok1 := fields[0].(int64)
	ttl, ok2 := fields[1].(int64)
	if !ok1 || !ok2 {
		return limiter.Context{}, fmt.Errorf("limiter script answered %v: want two integers", v)
	}
	expiration := now.Add(rate.Period)
	if ttl > 0 {
		expiration = now.Add(time.Duration(ttl) * time.Millisecond)
	}
	return common.GetContextFromState(now, rate, expiration, count), nil
}
