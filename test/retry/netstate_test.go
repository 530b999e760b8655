package retry_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
)

// netConf is a Docker network with everything that keeps per-network
// state: a masquerade chain for its subnet, published ports with hairpin
// SNAT, isolation (icc off), and names.
const netConf = `{
  "cniVersion": "1.1.0",
  "name": "%NAME%",
  "plugins": [
    {"type": "bridge", "bridge": "%BRIDGE%", "isGateway": true, "isDefaultGateway": true, "ipMasq": true,
     "ipMasqBackend": "%BACKEND%",
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "%SUBNET%"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "backend": "%BACKEND%"},
    {"type": "firewall", "backend": "%BACKEND%", "ingressPolicy": "isolated"},
    {"type": "dnsname", "domainName": "dns.test", "upstreams": ["192.0.2.53"]}
  ]
}`

func netList(e *nstest.Env, name, bridge, subnet, backend string) *libcni.NetworkConfigList {
	r := strings.NewReplacer("%NAME%", name, "%BRIDGE%", bridge, "%SUBNET%", subnet, "%BACKEND%", backend)
	return e.Conflist([]byte(r.Replace(netConf)))
}

// noSidecar kills a DNS sidecar left by a failed test (it would keep the
// host namespace alive).
func noSidecar(e *nstest.Env) {
	e.T.Cleanup(func() {
		b, err := os.ReadFile(filepath.Join(e.DataDir, "dnsname", "sidecar.pid"))
		if err != nil {
			return
		}
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// networkState is what of network name is left in the host: nftables
// objects naming it, its subnet or its bridge, and files of the plugins'
// state directories.
func networkState(t testing.TB, e *nstest.Env, name, bridge, subnetChain string) []string {
	t.Helper()
	var left []string
	ruleset := nftList(t, e.Host)
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		ruleset += e.Host.MustExec(t, cmd)
	}
	for _, line := range strings.Split(ruleset, "\n") {
		if strings.Contains(line, subnetChain) || strings.Contains(line, `"`+bridge+`"`) ||
			strings.Contains(line, `"`+name+`"`) || strings.Contains(line, `"`+name+`/`) ||
			strings.Contains(line, " "+bridge+" ") || strings.Contains(line, " "+name+"/") ||
			strings.Contains(line, "-net-"+name+" ") {
			left = append(left, "nft: "+strings.TrimSpace(line))
		}
	}
	// dnsname's files of this network (the sidecar's own files belong to
	// every network). host-local's directory keeps its lock and round-robin
	// position, as the reference does, so that freed addresses are not
	// handed out again at once; its reservations are checked elsewhere.
	_ = filepath.Walk(filepath.Join(e.DataDir, "dnsname"), func(p string, info os.FileInfo, err error) error {
		rel := strings.TrimPrefix(p, e.DataDir+"/")
		if err == nil && (strings.Contains(rel, "/"+name+"/") || strings.Contains(rel, "/"+name+".")) {
			left = append(left, "file: "+rel)
		}
		return nil
	})
	return left
}

// After the last container of a network is deleted, nothing of the
// network is left: not its masquerade chain, not its isolation or hairpin
// entries, not its names' files. Another network's state stays.
func TestLastDelRemovesNetworkState(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			e := nstest.NewEnv(t)
			noSidecar(e)
			ctx := context.Background()
			gone := netList(e, "gone", "brgone", "10.55.0.0/24", backend)
			stays := netList(e, "stays", "brstays", "10.56.0.0/24", backend)
			keeper := e.Run(stays, "keeper")
			masqChains := iptMasqChains(t, e)
			var rcs []*libcni.RuntimeConf
			for i := 0; i < 2; i++ {
				c := e.Run(gone, fmt.Sprintf("ctr-%d", i), func(rc *libcni.RuntimeConf) {
					rc.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": 8080 + i, "containerPort": 80, "protocol": "tcp"}}}
				})
				rcs = append(rcs, c.RC)
			}
			if left := networkState(t, e, "gone", "brgone", "masq-10.55.0.0-24"); len(left) == 0 {
				t.Fatal("the network left no trace while in use: the check below would prove nothing")
			}
			if backend == "iptables" && iptMasqChains(t, e) == masqChains {
				t.Fatal("no iptables masquerade chain for the network while in use")
			}
			for i, rc := range rcs {
				if err := e.RT.Del(ctx, gone, rc); err != nil {
					t.Fatalf("DEL %s: %v", rc.ContainerID, err)
				}
				if i == 0 && backend == "nftables" {
					// One container is left: the network's state stays.
					// (nft prints fw-bridges' ifname keys as "": fw-same
					// shows the bridge.)
					for set, want := range map[string]string{"fw-same": `"brgone" . "brgone"`, "fw-bridges": `comment "gone"`, "hairpin4": "10.55.0.0/24"} {
						if out := e.Host.MustExec(t, "nft", "list", "set", "inet", "berth", set); !strings.Contains(out, want) {
							t.Fatalf("with one container left, %s lost %s:\n%s", set, want, out)
						}
					}
					if out := e.Host.MustExec(t, "nft", "list", "chains", "inet"); !strings.Contains(out, "masq-10.55.0.0-24") {
						t.Fatalf("with one container left, the masquerade chain went:\n%s", out)
					}
				}
			}
			if left := networkState(t, e, "gone", "brgone", "masq-10.55.0.0-24"); len(left) > 0 {
				t.Errorf("after the network's last DEL, left:\n%s", strings.Join(left, "\n"))
			}
			if got := iptMasqChains(t, e); got != masqChains {
				t.Errorf("after the network's last DEL, %d iptables masquerade chains, want %d", got, masqChains)
			}
			if left := networkState(t, e, "stays", "brstays", "masq-10.56.0.0-24"); len(left) == 0 {
				t.Errorf("the other network's state went too")
			}
			if err := e.RT.Check(ctx, stays, keeper.RC); err != nil {
				t.Errorf("CHECK of the other network's container: %v", err)
			}
		})
	}
}

// iptMasqChains counts the iptables subnet masquerade chains in the host.
func iptMasqChains(t testing.TB, e *nstest.Env) int {
	t.Helper()
	n := 0
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out := e.Host.MustExec(t, cmd, "-t", "nat")
		n += strings.Count(out, ":BERTH-MASQ-")
	}
	return n
}

// The network's last container going while its next one comes must not
// lose the network's shared state for the newcomer: each round ADDs a
// container while the previous one, the only other, is deleted; the
// newcomer's CHECK (masquerade chain, isolation entries) and hairpin entry
// must hold after every round.
func TestConcurrentAddDelKeepsNetworkState(t *testing.T) {
	e := nstest.NewEnv(t)
	noSidecar(e)
	ctx := context.Background()
	list := netList(e, "churn", "brchurn", "10.57.0.0/24", "nftables")
	ports := func(i int) func(*libcni.RuntimeConf) {
		return func(rc *libcni.RuntimeConf) {
			rc.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": 9000 + i, "containerPort": 80, "protocol": "tcp"}}}
		}
	}
	add := func(i int) (*libcni.RuntimeConf, error) {
		n := nstest.NewNS(t, "c")
		rc := nstest.Attachment(fmt.Sprintf("churn-%d", i), n, "eth0")
		ports(i)(rc)
		_, err := e.RT.Add(ctx, list, rc)
		t.Cleanup(func() { _ = e.RT.Del(ctx, list, rc) })
		return rc, err
	}
	prev, err := add(0)
	if err != nil {
		t.Fatalf("ADD 0: %v", err)
	}
	for i := 1; i <= 15; i++ {
		var wg sync.WaitGroup
		var next *libcni.RuntimeConf
		var addErr, delErr error
		wg.Add(2)
		go func() { defer wg.Done(); next, addErr = add(i) }()
		go func() { defer wg.Done(); delErr = e.RT.Del(ctx, list, prev) }()
		wg.Wait()
		if addErr != nil || delErr != nil {
			t.Fatalf("round %d: ADD %v, DEL %v", i, addErr, delErr)
		}
		if err := e.RT.Check(ctx, list, next); err != nil {
			t.Fatalf("round %d: CHECK of the newcomer: %v", i, err)
		}
		if hp := e.Host.MustExec(t, "nft", "list", "set", "inet", "berth", "hairpin4"); !strings.Contains(hp, "10.57.0.0/24") {
			t.Fatalf("round %d: hairpin4 lost the network's subnet:\n%s", i, hp)
		}
		prev = next
	}
}
