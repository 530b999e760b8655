package storm_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthnet/berth/internal/nstest"
)

// EnvCycles sets the storm's number of ADD/DEL cycles (`make soak` runs
// 20000); EnvWorkers its concurrency.
const (
	EnvCycles  = "BERTH_STORM_CYCLES"
	EnvWorkers = "BERTH_STORM_WORKERS"
)

func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// The storm: workers run ADD/DEL cycles concurrently over Docker's chain
// with a published port and a name each, as a busy node's runtime does.
// Every cycle must succeed; no address may be held by two live containers
// at any moment; every 25th cycle of a worker checks traffic and the
// attachment (CHECK); and afterwards nothing of the network may be left:
// links, reservations, nftables and iptables entries, registry entries,
// sidecar processes, libcni cache entries.
func TestStorm(t *testing.T) {
	cycles := envInt(t, EnvCycles, 1000)
	workers := envInt(t, EnvWorkers, 32)
	w := newWorld(t)
	list := w.Conflist([]byte(stormConf))
	ctx := context.Background()

	// The audit sees an attachment: it is no empty check.
	probe := w.Run(list, "probe")
	if leaks := w.leaks(t, list.Name, "brstorm", nil); len(leaks) < 5 {
		t.Fatalf("the audit found only %v of a live attachment", leaks)
	}
	if err := w.RT.Del(ctx, list, probe.RC); err != nil {
		t.Fatal(err)
	}

	// Each worker reuses one container namespace: a runtime makes a new
	// one per container, but namespace creation is not what is tested
	// here, and DEL must leave the namespace as it found it anyway.
	nss := make([]*nstest.NS, workers)
	for i := range nss {
		nss[i] = nstest.NewNS(t, "w")
	}

	var (
		mu        sync.Mutex
		live      = map[string]string{} // address -> container ID
		dups      []string
		failures  []string
		next      atomic.Int64
		addTime   atomic.Int64
		delTime   atomic.Int64
		completed atomic.Int64
	)
	fail := func(s string) {
		mu.Lock()
		failures = append(failures, s)
		mu.Unlock()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for wk := 0; wk < workers; wk++ {
		wg.Add(1)
		go func(wk int) {
			defer wg.Done()
			for {
				n := int(next.Add(1))
				if n > cycles {
					return
				}
				id := fmt.Sprintf("storm-%d-%d", wk, n)
				rc := nstest.Attachment(id, nss[wk], "eth0")
				rc.CapabilityArgs = map[string]any{
					"portMappings": []map[string]any{{"hostPort": 20000 + wk, "containerPort": 80, "protocol": "tcp"}},
					"aliases":      map[string][]string{"storm": {fmt.Sprintf("w%d", wk)}},
				}
				rc.Args = [][2]string{{"K8S_POD_NAME", fmt.Sprintf("pod-%d", n)}}
				t0 := time.Now()
				res, err := w.RT.Add(ctx, list, rc)
				addTime.Add(int64(time.Since(t0)))
				if err != nil {
					fail(fmt.Sprintf("ADD %s: %v", id, err))
					_ = w.RT.Del(ctx, list, rc)
					continue
				}
				ip := res.IPs[0].Address.IP.String()
				mu.Lock()
				if other, ok := live[ip]; ok {
					dups = append(dups, fmt.Sprintf("%s given to %s while %s holds it", ip, id, other))
				}
				live[ip] = id
				mu.Unlock()
				if n%25 == 0 {
					if out, err := nss[wk].Exec("ping", "-c", "1", "-W", "2", "10.60.0.1"); err != nil {
						fail(fmt.Sprintf("%s: ping gateway: %v %s", id, err, out))
					}
					if err := w.RT.Check(ctx, list, rc); err != nil {
						fail(fmt.Sprintf("CHECK %s: %v", id, err))
					}
				}
				// Free the address in the books before the DEL: once the
				// DEL has begun, host-local may hand it out again.
				mu.Lock()
				delete(live, ip)
				mu.Unlock()
				t0 = time.Now()
				err = w.RT.Del(ctx, list, rc)
				delTime.Add(int64(time.Since(t0)))
				if err != nil {
					fail(fmt.Sprintf("DEL %s: %v", id, err))
				}
				completed.Add(1)
			}
		}(wk)
	}
	wg.Wait()
	elapsed := time.Since(start)
	done := completed.Load()

	leaks := w.leaks(t, list.Name, "brstorm", nil)
	t.Logf("storm: %d cycles (ADD+DEL of bridge+host-local+ipMasq, portmap, firewall, dnsname, loopback), %d workers, %s, %.1f cycles/s; mean ADD %s, mean DEL %s; failures %d, duplicate addresses %d, leaks %d",
		done, workers, elapsed.Round(time.Millisecond), float64(done)/elapsed.Seconds(),
		time.Duration(addTime.Load()/int64(cycles)).Round(time.Millisecond), time.Duration(delTime.Load()/int64(cycles)).Round(time.Millisecond),
		len(failures), len(dups), len(leaks))
	for i, f := range failures {
		if i == 20 {
			t.Errorf("… and %d more failures", len(failures)-20)
			break
		}
		t.Error(f)
	}
	if len(dups) > 0 {
		t.Errorf("duplicate addresses:\n%s", strings.Join(dups, "\n"))
	}
	if len(leaks) > 0 {
		t.Errorf("left after the storm:\n%s", strings.Join(leaks, "\n"))
	}
	for i, n := range nss {
		if out := n.MustExec(t, "ip", "-o", "link", "show"); strings.Contains(out, "eth0") {
			t.Errorf("worker %d's namespace still has eth0:\n%s", i, out)
		}
	}
	// GC with nothing valid is then a no-op that succeeds.
	if err := w.RT.GC(ctx, list); err != nil {
		t.Errorf("GC after the storm: %v", err)
	}
}
