package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
	"github.com/lexiscore/gateway/internal/testkit/redistest"
)

// scaleOutLimit is the sustained limit per user in the scale-out tests: an
// hour's window, so that no window ends while a slow machine runs a test.
const (
	scaleOutRate  = "40/h"
	scaleOutLimit = 40
)

// scaleOut is a set of gateway replicas in front of one backend, sharing one
// JWT secret and one Redis setup.
type scaleOut struct {
	gws    []*Gateway
	secret string
}

// startScaleOut runs one gateway per entry of envs, each with the shared
// env plus its own.
func startScaleOut(t *testing.T, shared map[string]string, envs ...map[string]string) *scaleOut {
	t.Helper()
	be := StartBackend(t, bins, nil)
	so := &scaleOut{secret: randomSecret()}
	for _, own := range envs {
		env := map[string]string{
			"GATEWAY_JWT_SECRET":     so.secret,
			"GATEWAY_RATE_BURST":     "1000/s", // only the sustained policy is under test
			"GATEWAY_RATE_SUSTAINED": scaleOutRate,
		}
		for k, v := range shared {
			env[k] = v
		}
		for k, v := range own {
			env[k] = v
		}
		so.gws = append(so.gws, StartGateway(t, bins, []string{be.Addr}, env))
	}
	return so
}

func (so *scaleOut) bearer(t *testing.T, user string) http.Header {
	t.Helper()
	return SignedBearer(t, so.secret, Claims{Subject: user, Tier: "free"})
}

// spread sends n reads of user's scores, round robin over gws, from a few
// workers at once, and returns the count of each status.
func (so *scaleOut) spread(t *testing.T, user string, n int, gws []*Gateway) map[int]int {
	t.Helper()
	h := so.bearer(t, user)
	const workers = 6
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				status, _, _ := rlRequest(t, gws[i%len(gws)], http.MethodGet, "/v1/users/"+user+"/scores", h)
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return statuses
}

// exact fails unless statuses are exactly allowed × 200 and the rest 429.
func exact(t *testing.T, what string, statuses map[int]int, allowed, total int) {
	t.Helper()
	if statuses[http.StatusOK] != allowed || statuses[http.StatusTooManyRequests] != total-allowed || len(statuses) > 2 {
		t.Fatalf("%s: statuses %v for %d requests, want exactly %d × 200 and %d × 429", what, statuses, total, allowed, total-allowed)
	}
}

// TestScaleOutRedisCluster runs three gateway replicas sharing a real Redis
// Cluster of three masters: each user has one exact budget whichever
// replica a request reaches, the counters are sharded over every master,
// and a replica killed outright leaves nothing behind that the others need.
func TestScaleOutRedisCluster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	so := startScaleOut(t, map[string]string{
		"REDIS_ADDRS": strings.Join(cluster.Addrs(), " "),
		// A loaded test machine may take longer than the production 50ms;
		// failing closed turns any store failure into a 503 that the exact
		// counts catch, never a silent pass.
		"GATEWAY_RATE_STORE_TIMEOUT":  "2s",
		"GATEWAY_RATE_ON_STORE_ERROR": "fail_closed",
	}, nil, nil, nil)

	t.Run("one exact limit per user across replicas", func(t *testing.T) {
		users := []string{"ada", "bo", "cy", "di", "ed", "flo"}
		var wg sync.WaitGroup
		for _, u := range users {
			wg.Go(func() {
				exact(t, u, so.spread(t, u, scaleOutLimit+20, so.gws), scaleOutLimit, scaleOutLimit+20)
			})
		}
		wg.Wait()
		ctx := context.Background()
		for _, n := range cluster.Nodes {
			if keys, err := n.Client(t).DBSize(ctx).Result(); err != nil || keys == 0 {
				t.Errorf("cluster node %s holds %d keys (%v): the counters should be sharded over every master", n.Addr, keys, err)
			}
		}
	})

	t.Run("a killed replica loses nothing the others need", func(t *testing.T) {
		const before = 15
		exact(t, "through the replica about to die", so.spread(t, "gus", before, so.gws[2:]), before, before)
		so.gws[2].Kill()
		exact(t, "through the survivors", so.spread(t, "gus", scaleOutLimit, so.gws[:2]), scaleOutLimit-before, scaleOutLimit)
	})
}

// TestScaleOutRedisSentinel runs three gateway replicas on a Sentinel-watched
// master with one replica. The master is killed; until the gateways reach
// the promoted replica each keeps its on_store_error (one fails open, two
// closed) and no request waits much longer than the store timeout; after,
// limits are exact again across replicas.
func TestScaleOutRedisSentinel(t *testing.T) {
	sentinel := redistest.StartSentinel(t)
	const storeTimeout = 750 * time.Millisecond
	so := startScaleOut(t, map[string]string{
		"REDIS_ADDRS":                strings.Join(sentinel.Addrs(), " "),
		"REDIS_SENTINEL_MASTER":      redistest.SentinelMaster,
		"GATEWAY_RATE_STORE_TIMEOUT": storeTimeout.String(),
	},
		map[string]string{"GATEWAY_RATE_ON_STORE_ERROR": "fail_open"},
		map[string]string{"GATEWAY_RATE_ON_STORE_ERROR": "fail_closed"},
		map[string]string{"GATEWAY_RATE_ON_STORE_ERROR": "fail_closed"},
	)
	failOpen := map[int]bool{0: true}

	// Each replica's first decision dials Sentinel and then the master, which
	// on a loaded machine can take longer than the store timeout (a 503 from
	// a fail_closed replica, seen once beside another make test): warm each
	// one up before the counts that must be exact.
	for i, gw := range so.gws {
		user := fmt.Sprintf("warm-%d", i)
		h := so.bearer(t, user)
		testkit.Eventually(t, fmt.Sprintf("gateway %d to count in the master", i), func() error {
			if status, _, _ := rlRequest(t, gw, http.MethodGet, "/v1/users/"+user+"/scores", h); status != http.StatusOK {
				return fmt.Errorf("status %d", status)
			}
			return nil
		})
	}

	exact(t, "before the failover", so.spread(t, "hal", scaleOutLimit+20, so.gws), scaleOutLimit, scaleOutLimit+20)

	// Each replica sends requests one after another while the master dies
	// and Sentinel fails over, until it is seen to count in the new master.
	type outcome struct {
		status  int
		elapsed time.Duration
		body    string
	}
	outcomes := make([][]outcome, len(so.gws))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, gw := range so.gws {
		h := so.bearer(t, fmt.Sprintf("during-%d", i))
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				status, _, body := rlRequest(t, gw, http.MethodGet, fmt.Sprintf("/v1/users/during-%d/scores", i), h)
				outcomes[i] = append(outcomes[i], outcome{status, time.Since(start), string(body)})
			}
		})
	}
	sentinel.KillMaster(t, 90*time.Second)
	newMaster := sentinel.Replica.Client(t)
	for i, gw := range so.gws {
		user := fmt.Sprintf("follow-%d", i)
		h := so.bearer(t, user)
		testkit.Eventually(t, fmt.Sprintf("gateway %d to count in the new master", i), func() error {
			if status, _, _ := rlRequest(t, gw, http.MethodGet, "/v1/users/"+user+"/scores", h); status != http.StatusOK {
				return fmt.Errorf("status %d", status)
			}
			keys, err := newMaster.Keys(context.Background(), "*"+user).Result()
			if err != nil || len(keys) == 0 {
				return fmt.Errorf("no counter of %s in the new master (%v)", user, err)
			}
			return nil
		})
	}
	close(stop)
	wg.Wait()

	// The bound leaves room for TLS and a loaded machine; a client that
	// waited on a dead master would take go-redis's 5s dial or 3s read
	// timeout, several times over.
	const bound = storeTimeout + 2*time.Second
	unavailable := 0
	for i, outs := range outcomes {
		for _, o := range outs {
			if o.elapsed > bound {
				t.Errorf("gateway %d: a request took %v during the failover, more than %v", i, o.elapsed, bound)
			}
			switch {
			case o.status == http.StatusOK || o.status == http.StatusTooManyRequests:
			case o.status == http.StatusServiceUnavailable && !failOpen[i] && strings.Contains(o.body, "#rate-limit-unavailable"):
				unavailable++
			default:
				t.Errorf("gateway %d (fail open %t): %d %s during the failover", i, failOpen[i], o.status, o.body)
			}
		}
	}
	if unavailable == 0 {
		t.Errorf("no 503 from the gateways that fail closed: the failover was not seen")
	}
	if n := rlMetric(t, so.gws[0].Metrics(t), "gateway_ratelimit_decisions_total", `decision="fail_open",policy="sustained"`); n == 0 {
		t.Errorf("the gateway that fails open decided nothing in memory: the failover was not seen")
	}

	exact(t, "after the failover", so.spread(t, "ivy", scaleOutLimit+20, so.gws), scaleOutLimit, scaleOutLimit+20)
}
