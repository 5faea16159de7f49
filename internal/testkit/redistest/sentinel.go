package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lexiscore/gateway/internal/testkit"
)

// SentinelMaster is the master set name the Sentinels of StartSentinel
// monitor.
const SentinelMaster = "lexiscore"

// Sentinel is a master, one replica of it, and three Sentinels watching
// them with a quorum of two.
type Sentinel struct {
	Master, Replica *Server
	Sentinels       []*Server
}

// StartSentinel runs the master, the replica, and, once the replica is in
// sync, the three Sentinels; it returns when every Sentinel knows the
// replica and the two other Sentinels, so that a failover can be elected.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{Master: startServer(t, "sentinel master")}
	host, port, _ := net.SplitHostPort(s.Master.Addr)
	s.Replica = startServer(t, "sentinel replica", "--replicaof", host, port)
	deadline := time.Now().Add(60 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	replica := s.Replica.Client(t)
	testkit.EventuallyWithin(t, time.Until(deadline), "the replica to sync with the master", func() error {
		info, err := replica.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("INFO replication:\n%s", info)
		}
		return nil
	})
	for i := range 3 {
		s.Sentinels = append(s.Sentinels, startSentinel(t, i, s.Master.Addr))
	}
	for _, sn := range s.Sentinels {
		client := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr})
		t.Cleanup(func() { _ = client.Close() })
		testkit.EventuallyWithin(t, time.Until(deadline), "sentinel "+sn.Addr+" to know the replica and its peers", func() error {
			m, err := client.Master(ctx, SentinelMaster).Result()
			if err != nil {
				return err
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" || m["flags"] != "master" {
				return fmt.Errorf("SENTINEL MASTER %s: %v", SentinelMaster, m)
			}
			return nil
		})
	}
	return s
}

// startSentinel runs redis-server in Sentinel mode. A master unanswering for
// 2s is down, long enough that a loaded test machine does not fail over by
// itself, short enough for a test to wait for.
func startSentinel(t testing.TB, i int, master string) *Server {
	t.Helper()
	s := newServer(t, fmt.Sprintf("sentinel %d", i))
	_, port, _ := net.SplitHostPort(s.Addr)
	mhost, mport, _ := net.SplitHostPort(master)
	conf := filepath.Join(s.dir, "sentinel.conf")
	// Sentinel rewrites its configuration file, so it must be its own.
	text := strings.Join([]string{
		"port " + port,
		"bind 127.0.0.1",
		"dir " + s.dir,
		"sentinel monitor " + SentinelMaster + " " + mhost + " " + mport + " 2",
		"sentinel down-after-milliseconds " + SentinelMaster + " 2000",
		"sentinel failover-timeout " + SentinelMaster + " 10000",
		"sentinel parallel-syncs " + SentinelMaster + " 1",
		"",
	}, "\n")
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatalf("writing %s: %v", conf, err)
	}
	s.args = []string{conf, "--sentinel", "--loglevel", "warning"}
	s.start(t)
	return s
}

// Addrs are the Sentinels' addresses.
func (s *Sentinel) Addrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr
	}
	return addrs
}

// KillMaster kills the master as a crash would and waits until every
// Sentinel names the replica as the new master and the replica says so.
func (s *Sentinel) KillMaster(t testing.TB, timeout time.Duration) {
	t.Helper()
	s.Master.Kill()
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	replica := s.Replica.Client(t)
	testkit.EventuallyWithin(t, time.Until(deadline), "the Sentinels to promote the replica", func() error {
		for _, sn := range s.Sentinels {
			client := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, MaxRetries: -1})
			addr, err := client.GetMasterAddrByName(ctx, SentinelMaster).Result()
			_ = client.Close()
			if err != nil {
				return err
			}
			if got := net.JoinHostPort(addr[0], addr[1]); got != s.Replica.Addr {
				return fmt.Errorf("sentinel %s names %s", sn.Addr, got)
			}
		}
		info, err := replica.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:master") {
			return fmt.Errorf("the replica is not master yet:\n%s", info)
		}
		return nil
	})
}
