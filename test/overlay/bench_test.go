package overlay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/internal/nstest"
)

// TestFigures measures, and reports (never asserts), the overlay's
// figures on simulated hosts: TCP throughput container to container
// across hosts against the same hosts' underlay addresses (same run), the
// time from a late host's first ADD to its route on an old host, ADD and
// DEL medians, and the daemon's resident memory. Run with
// BERTH_OVERLAY_BENCH=1 (needs iperf3).
func TestFigures(t *testing.T) {
	if os.Getenv("BERTH_OVERLAY_BENCH") != "1" {
		t.Skip("figures: set BERTH_OVERLAY_BENCH=1")
	}
	c := newCluster(t)
	c.startEtcd()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	h1, h2 := c.addHost(), c.addHost()
	a := h1.Run(h1.list(raw), "alpha")
	b := h2.Run(h2.list(raw), "bravo")

	// Interleaved rounds, the order alternating: the machine's load moves
	// under both alike.
	var overs, unders []float64
	for round := 1; round <= 4; round++ {
		var over, under float64
		if round%2 == 1 {
			over, under = iperf(t, a.NS, b.NS, b.IP(t, "4")), iperf(t, h1.Host, h2.Host, h2.addr)
		} else {
			under, over = iperf(t, h1.Host, h2.Host, h2.addr), iperf(t, a.NS, b.NS, b.IP(t, "4"))
		}
		overs, unders = append(overs, over), append(unders, under)
		t.Logf("round %d: TCP %s -> %s over the overlay %.2f Gbit/s; underlay %s -> %s %.2f Gbit/s; ratio %.2f",
			round, a.IP(t, "4"), b.IP(t, "4"), over, h1.addr, h2.addr, under, over/under)
	}
	sum := func(v []float64) (s float64) {
		for _, x := range v {
			s += x
		}
		return s
	}
	t.Logf("4 rounds: overlay %.2f Gbit/s, underlay %.2f Gbit/s on average: ratio %.2f", sum(overs)/4, sum(unders)/4, sum(overs)/sum(unders))

	var joins []time.Duration
	for i := 0; i < 5; i++ {
		h := c.addHost()
		start := time.Now()
		ctr := h.Run(h.list(raw), fmt.Sprintf("late%d", i))
		joins = append(joins, h1.waitRoute(t, "berthvx42", subnetOf(ctr.IP(t, "4")), true, 10*time.Second, start))
	}
	t.Logf("late host's first ADD to its route on an old host: median %v, all %v", median(joins), joins)

	list := h1.list(raw)
	var adds, dels []time.Duration
	for i := 0; i < 20; i++ {
		ctr := &nstest.Container{NS: nstest.NewNS(t, "ctr"), ID: fmt.Sprintf("bench%d", i)}
		rc := nstest.Attachment(ctr.ID, ctr.NS, "eth0")
		start := time.Now()
		if _, err := h1.RT.Add(context.Background(), list, rc); err != nil {
			t.Fatal(err)
		}
		adds = append(adds, time.Since(start))
		start = time.Now()
		if err := h1.RT.Del(context.Background(), list, rc); err != nil {
			t.Fatal(err)
		}
		dels = append(dels, time.Since(start))
	}
	t.Logf("ADD median %v, DEL median %v (20 each, host holding its lease, daemon running, %d hosts)", median(adds), median(dels), len(c.hosts))

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h1.daemonPID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			t.Logf("berth-overlayd resident memory, 1 network, %d peers: %s", len(c.hosts)-1, strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")))
		}
	}
}

// iperf runs a 5 s TCP test from client to server's addr and returns
// Gbit/s received.
func iperf(t *testing.T, client, server *nstest.NS, addr string) float64 {
	t.Helper()
	srv := server.Command("iperf3", "-s", "-1", "-B", addr)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Wait() }()
	defer func() { _ = srv.Process.Kill() }()
	var out string
	var err error
	// iperf3 says nothing when it listens: the client tries again for a
	// moment while the server starts.
	for i := 0; i < 20; i++ {
		// With -J, a refused connection is an "error" in the JSON.
		if out, err = client.Exec("iperf3", "-J", "-t", "5", "-c", addr); err == nil && !strings.Contains(out, `"error"`) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("iperf3 to %s: %v\n%s", addr, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("iperf3 output: %v", err)
	}
	if r.End.SumReceived.BitsPerSecond == 0 {
		t.Fatalf("iperf3 to %s measured nothing:\n%s", addr, out)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
