package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lexiscore/gateway/internal/testkit"
)

// slots is the number of hash slots of a Redis Cluster.
const slots = 16384

// Cluster is a Redis Cluster of masters only, each a redis-server in
// cluster mode owning an equal share of the hash slots.
type Cluster struct {
	Nodes []*Server
}

// StartCluster runs masters redis-servers in cluster mode, gives each a
// contiguous share of the slots, introduces them to each other and waits
// until every node reports the cluster ok and knows every slot's owner.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	c := &Cluster{}
	buses := make([]string, masters)
	for i := range masters {
		// The cluster bus on a free port of its own: by default it is the
		// client port + 10000, which lands in the ephemeral range where an
		// outgoing connection may hold it.
		_, buses[i], _ = net.SplitHostPort(testkit.FreeAddr(t))
		c.Nodes = append(c.Nodes, startServer(t, fmt.Sprintf("cluster node %d", i),
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", buses[i], "--cluster-node-timeout", "5000"))
	}
	deadline := time.Now().Add(60 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for i, n := range c.Nodes {
		client := n.Client(t)
		first, last := i*slots/masters, (i+1)*slots/masters-1
		if err := client.ClusterAddSlotsRange(ctx, first, last).Err(); err != nil {
			t.Fatalf("assigning slots %d-%d to %s: %v", first, last, n.Addr, err)
		}
		if i == 0 {
			continue
		}
		host, port, _ := net.SplitHostPort(n.Addr)
		if err := c.Nodes[0].Client(t).Do(ctx, "cluster", "meet", host, port, buses[i]).Err(); err != nil {
			t.Fatalf("introducing %s to the cluster: %v", n.Addr, err)
		}
	}
	for _, n := range c.Nodes {
		client := n.Client(t)
		testkit.EventuallyWithin(t, time.Until(deadline), "cluster node "+n.Addr+" to see the whole cluster", func() error {
			info, err := client.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			want := []string{"cluster_state:ok", "cluster_known_nodes:" + strconv.Itoa(masters),
				"cluster_slots_assigned:" + strconv.Itoa(slots)}
			for _, w := range want {
				if !strings.Contains(info, w) {
					return fmt.Errorf("CLUSTER INFO lacks %s:\n%s", w, info)
				}
			}
			return nil
		})
	}
	return c
}

// Addrs are the nodes' addresses, the seeds a cluster client starts from.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}
