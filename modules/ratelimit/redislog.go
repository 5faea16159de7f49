package ratelimit

import (
	"context"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// go-redis logs on its own (a failed dial, a connection its pool drops) as
// plain text on stderr, which would break the gateway's JSON log stream.
// Its logger is process-wide, so it is set once, to one that writes through
// whatever Caddy's default logger is when the line is written.
func init() {
	redis.SetLogger(redisLog{logger: func() *zap.Logger { return caddy.Log().Named("redis") }})
}

// redisLog is go-redis's Logging interface on a zap logger.
type redisLog struct {
	logger func() *zap.Logger
}

// Printf writes one of go-redis's lines as a warning: the library logs only
// trouble.
func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.logger().Warn(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}
