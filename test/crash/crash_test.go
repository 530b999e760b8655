package crash_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// The crash points of the plugins (crashpoint.Hit calls), by command.
var (
	addPoints = []string{
		"bridge.add.veth", "bridge.add.ipam", "bridge.add.masq",
		"tuning.save.written", "firewall.add.rules", "portmap.add.ports",
		"dnsname.add.registered", "dnsname.add.notified",
	}
	delPoints = []string{
		"bridge.del.teardown", "firewall.del", "portmap.del", "dnsname.del.unregistered",
	}
)

// envInt reads a run count from the environment (make soak raises them).
func envInt(t testing.TB, key string, def int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", key, v, err)
	}
	return n
}

// TestCrashPoints kills each plugin at each of its crash points (SIGKILL:
// no deferred undo runs), then does what a runtime does — DEL, and GC with
// its valid list — and checks that nothing of the killed attachment is left
// (veth, reservation, nftables element, registry entry, libcni cache
// entry), that the bystander kept everything, and that the next ADD works.
func TestCrashPoints(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) { crashPoints(t, backend) })
	}
}

func crashPoints(t *testing.T, backend string) {
	r := newRig(t, backend)
	reps := envInt(t, "BERTH_CRASH_REPS", 2)
	n, kills := 0, 0
	for rep := 0; rep < reps; rep++ {
		for _, p := range addPoints {
			n++
			id := fmt.Sprintf("victim%05d", n)
			withEnv("BERTH_CRASHPOINT", p, func() {
				if err := r.add(id); err == nil {
					t.Fatalf("%s: ADD succeeded: the crash point was not reached", p)
				} else if !strings.Contains(err.Error(), "signal: killed") {
					t.Fatalf("%s: ADD failed with %v, want the plugin killed", p, err)
				}
			})
			kills++
			r.recover(id)
			if l := r.leaks(id); len(l) > 0 {
				t.Fatalf("ADD killed at %s, then DEL and GC: %s", p, strings.Join(l, "; "))
			}
			r.reattach(id + "r")
		}
		for _, p := range delPoints {
			n++
			id := fmt.Sprintf("victim%05d", n)
			if err := r.add(id); err != nil {
				t.Fatalf("ADD before the DEL killed at %s: %v", p, err)
			}
			withEnv("BERTH_CRASHPOINT", p, func() {
				if err := r.del(id); err == nil {
					t.Fatalf("%s: DEL succeeded: the crash point was not reached", p)
				}
			})
			kills++
			r.recover(id)
			if l := r.leaks(id); len(l) > 0 {
				t.Fatalf("DEL killed at %s, then DEL and GC: %s", p, strings.Join(l, "; "))
			}
			r.reattach(id + "r")
		}
	}
	r.finish()
	t.Logf("crash points: %d runs, %d kills, 0 leaks", n, kills)
}

// isKill tells a killed plugin from one that failed: libcni reports
// "signal: killed", or, when the plugin had printed its result before the
// kill, an error decoded from that result (no code, no message).
func isKill(err error) bool {
	var ce *types.Error
	return strings.Contains(err.Error(), "signal: killed") ||
		errors.As(err, &ce) && ce.Code == 0 && ce.Msg == ""
}

// TestCrashRandom kills the plugins of ADD and of DEL at random moments:
// every plugin process of the chain SIGKILLs itself if still running at a
// moment drawn between the start of the command and a little after its
// usual end, so the kill falls anywhere in the chain (or nowhere). Then it
// recovers as a runtime does and checks for leaks. Every tenth run, and
// after the last, a clean ADD proves the network usable.
func TestCrashRandom(t *testing.T) {
	// CI: nftables (the default backend); make soak-crash adds iptables.
	backends := strings.Fields(os.Getenv("BERTH_CRASH_RANDOM_BACKENDS"))
	if len(backends) == 0 {
		backends = []string{"nftables"}
	}
	for _, b := range backends {
		t.Run(b, func(t *testing.T) { crashRandom(t, b) })
	}
}

func crashRandom(t *testing.T, backend string) {
	r := newRig(t, backend)
	runs := envInt(t, "BERTH_CRASH_RUNS", 152)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BERTH_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (BERTH_CRASH_SEED to replay the same draws)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	// The window is what a clean ADD and DEL take here, and half again.
	start := time.Now()
	r.reattach("calibrate")
	window := time.Since(start) * 3 / 4
	t.Logf("kill window per command: %v", window)

	killedAdd, killedDel := 0, 0
	for i := 1; i <= runs; i++ {
		id := fmt.Sprintf("victim%05d", i)
		dAdd := time.Duration(rng.Int64N(int64(window)))
		dDel := time.Duration(rng.Int64N(int64(window)))
		killAt := func(d time.Duration) string { return strconv.FormatInt(time.Now().Add(d).UnixNano(), 10) }
		withEnv("BERTH_CRASH_AT", killAt(dAdd), func() {
			if err := r.add(id); err != nil {
				if !isKill(err) {
					t.Fatalf("run %d: ADD failed with %v, not a kill", i, err)
				}
				killedAdd++
			}
		})
		withEnv("BERTH_CRASH_AT", killAt(dDel), func() {
			if err := r.del(id); err != nil {
				if !isKill(err) {
					t.Fatalf("run %d: DEL failed with %v, not a kill", i, err)
				}
				killedDel++
			}
		})
		r.recover(id)
		if l := r.leaks(id); len(l) > 0 {
			t.Fatalf("run %d (ADD killed after %v, DEL after %v): %s", i, dAdd, dDel, strings.Join(l, "; "))
		}
		if i%10 == 0 || i == runs {
			r.reattach(id + "r")
		}
	}
	r.finish()
	t.Logf("random kills: %d runs, %d ADDs and %d DELs killed, 0 leaks", runs, killedAdd, killedDel)
}
