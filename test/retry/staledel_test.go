package retry_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
)

// staleConf is Docker's bridge with published ports and Docker's isolation,
// on a /30 so that the next container gets the address a DEL just freed.
const staleConf = `{
  "cniVersion": "1.1.0",
  "name": "stale",
  "plugins": [
    {"type": "bridge", "bridge": "brstale", "isGateway": true, "isDefaultGateway": true,
     "ipMasq": true, "ipMasqBackend": "%BACKEND%",
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.44.0.0/30", "gateway": "10.44.0.1"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "backend": "%BACKEND%"},
    {"type": "firewall", "backend": "%BACKEND%", "ingressPolicy": "same-bridge"}
  ]
}`

// A late or repeated DEL of container A, carrying A's prevResult, after
// host-local handed A's address to container B, must not remove B's
// masquerade, published port or firewall entries: DEL removes only what
// carries A's tag.
func TestStaleDelKeepsNewOwnersRules(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			e := nstest.NewEnv(t)
			out := outside(t, e)
			list := e.Conflist([]byte(strings.ReplaceAll(staleConf, "%BACKEND%", backend)))
			ctx := context.Background()

			// A, through a runtime whose cache we copy before A's DEL.
			cacheA, stale := t.TempDir(), t.TempDir()
			rtA := runtimeWithCache(t, e, cacheA)
			a := nstest.NewNS(t, "a")
			rcA := nstest.Attachment("ctr-a", a, "eth0")
			rcA.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}}
			resA, err := rtA.Add(ctx, list, rcA)
			if err != nil {
				t.Fatalf("ADD A: %v", err)
			}
			ipA := nstest.IP(t, resA, "4")
			if out, err := exec.Command("cp", "-a", cacheA+"/.", stale).CombinedOutput(); err != nil {
				t.Fatalf("copy libcni cache: %v: %s", err, out)
			}
			if err := rtA.Del(ctx, list, rcA); err != nil {
				t.Fatalf("DEL A: %v", err)
			}

			b := &nstest.Container{NS: nstest.NewNS(t, "b"), ID: "ctr-b"}
			b.RC, b.Res = e.Attach(list, b, "eth0", func(rc *libcni.RuntimeConf) {
				rc.CapabilityArgs = rcA.CapabilityArgs
			})
			if ipB := b.IP(t, "4"); ipB != ipA {
				t.Fatalf("B got %s, want A's freed address %s (the test needs the reuse)", ipB, ipA)
			}
			serveHTTP(t, b.NS, "b")
			check := func(when string) {
				t.Helper()
				if got, err := sourceSeenOutside(b.NS); err != nil || got != hostOutIP {
					t.Errorf("%s: outside saw B's connection from %q (%v), want %s (masquerade)", when, got, err, hostOutIP)
				}
				if got, err := httpGet(out, "http://"+hostOutIP+":8080/"); err != nil || got != "hello from b" {
					t.Errorf("%s: published port 8080: got %q, %v; want B's answer", when, got, err)
				}
				if err := e.RT.Check(ctx, list, b.RC); err != nil {
					t.Errorf("%s: CHECK of B: %v", when, err)
				}
			}
			check("before the stale DEL")

			// The stale DEL: A's attachment and A's cached result (its
			// prevResult names B's address now), twice.
			rtStale := runtimeWithCache(t, e, stale)
			if _, err := os.Stat(filepath.Join(stale, "results")); err != nil {
				t.Fatalf("copied cache has no results: %v", err)
			}
			for i := 0; i < 2; i++ {
				if err := rtStale.Del(ctx, list, rcA); err != nil {
					t.Fatalf("stale DEL of A: %v", err)
				}
			}
			check("after the stale DEL")
		})
	}
}
