package storm_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/internal/sandbox"
)

// boot switches w to a fresh host namespace (a machine after a reboot:
// no links, no rules) whose runtime keeps w's libcni cache (on /var/lib on
// a node). With wipeRun, the plugins' /run state goes too (tmpfs): the DNS
// sidecar dies and dnsname's directory is removed. /var/lib state (the
// reservations under DataDir/networks) is kept.
func (w *world) boot(t *testing.T, wipeRun bool) {
	t.Helper()
	if wipeRun {
		for _, pid := range w.sidecars() {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
				exits(pid, 5e9)
			}
		}
		if err := os.RemoveAll(filepath.Join(w.DataDir, "dnsname")); err != nil {
			t.Fatal(err)
		}
	}
	// The old host namespace stays until cleanup, unused: to the new boot
	// it is another machine.
	w.Host = nstest.NewNS(t, "boot")
	w.RT = &nstest.Runtime{Runtime: sandbox.NewRuntime(w.Host.NS, w.cache, nstest.CNIPath(t)), Host: w.Host}
}

// add attaches a new container namespace as id/eth0; the test DELs it.
func (w *world) add(t *testing.T, list *libcni.NetworkConfigList, id string) (*libcni.RuntimeConf, string) {
	t.Helper()
	return w.addIn(t, list, id, nstest.NewNS(t, "c").NS)
}

func (w *world) addIn(t *testing.T, list *libcni.NetworkConfigList, id string, n *sandbox.NS) (*libcni.RuntimeConf, string) {
	t.Helper()
	rc := sandbox.Attachment(id, n, "eth0")
	rc.CapabilityArgs = map[string]any{"aliases": map[string][]string{list.Name: {id + "-alias"}}}
	res, err := w.RT.Add(context.Background(), list, rc)
	if err != nil {
		t.Fatalf("ADD %s: %v", id, err)
	}
	return rc, nstest.IP(t, res, "4")
}

// Host restart: /run gone, /var/lib kept, every container gone. The
// runtime restarts two of four containers (same IDs, new namespaces) and
// runs GC with them as the valid ones: the other two's reservations,
// cached results and anything else must go; the restarted ones keep their
// addresses, rules and names. Then their DELs leave nothing.
func TestHostRestartGC(t *testing.T) {
	w := newWorld(t)
	list := w.Conflist([]byte(stormConf))
	ctx := context.Background()
	ids := []string{"r0", "r1", "r2", "r3"}
	before := map[string]string{}
	for _, id := range ids {
		_, before[id] = w.add(t, list, id)
	}

	w.boot(t, true)
	valid := map[string]bool{}
	var rcs []*libcni.RuntimeConf
	for _, id := range ids[:2] {
		rc, ip := w.add(t, list, id)
		if ip != before[id] {
			t.Errorf("restarted %s got %s, had %s before the reboot", id, ip, before[id])
		}
		valid[id+"/eth0"] = true
		rcs = append(rcs, rc)
	}
	// What the reboot left for GC: the reservations and cached results of
	// the two that did not come back.
	pre := strings.Join(w.leaks(t, list.Name, "brstorm", valid), "\n")
	for _, want := range []string{"reservation: " + before["r2"], "reservation: " + before["r3"], "libcni cache: storm-r2-eth0", "libcni cache: storm-r3-eth0"} {
		if !strings.Contains(pre, want) {
			t.Fatalf("before GC the audit saw:\n%s\nwant %q among it: the check below would prove nothing", pre, want)
		}
	}
	if err := w.RT.GC(ctx, list, rcs...); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if leaks := w.leaks(t, list.Name, "brstorm", valid); len(leaks) > 0 {
		t.Errorf("after GC, left of the containers that did not come back:\n%s", strings.Join(leaks, "\n"))
	}
	w.wantKept(t, list, rcs)
	for _, rc := range rcs {
		if err := w.RT.Del(ctx, list, rc); err != nil {
			t.Fatalf("DEL %s: %v", rc.ContainerID, err)
		}
	}
	if leaks := w.leaks(t, list.Name, "brstorm", nil); len(leaks) > 0 {
		t.Errorf("after the last DELs, left:\n%s", strings.Join(leaks, "\n"))
	}
}

// Runtime restart without a reboot: kernel state and /run kept, but a
// container died while the runtime was down (its namespace is gone, no DEL
// came). GC with the survivors as valid removes the dead one's rules,
// reservation, name and cached result.
func TestRuntimeRestartGC(t *testing.T) {
	w := newWorld(t)
	list := w.Conflist([]byte(stormConf))
	ctx := context.Background()
	var rcs []*libcni.RuntimeConf
	valid := map[string]bool{}
	for _, id := range []string{"s0", "s1"} {
		rc, _ := w.add(t, list, id)
		rcs = append(rcs, rc)
		valid[id+"/eth0"] = true
	}
	// The dead container's namespace is removed by the test, not by
	// nstest's cleanup.
	deadNS, err := sandbox.NewNS(nstest.UniqueName("dead"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deadNS.Delete() })
	w.addIn(t, list, "dead", deadNS)
	if err := deadNS.Delete(); err != nil {
		t.Fatalf("removing the dead container's namespace: %v", err)
	}
	pre := strings.Join(w.leaks(t, list.Name, "brstorm", valid), "\n")
	for _, want := range []string{"reservation: ", "nft: ", "registry: dead@eth0.json", "libcni cache: storm-dead-eth0"} {
		if !strings.Contains(pre, want) {
			t.Fatalf("before GC the audit saw:\n%s\nwant %q among it: the check below would prove nothing", pre, want)
		}
	}
	if err := w.RT.GC(ctx, list, rcs...); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if leaks := w.leaks(t, list.Name, "brstorm", valid); len(leaks) > 0 {
		t.Errorf("after GC, left of the dead container:\n%s", strings.Join(leaks, "\n"))
	}
	w.wantKept(t, list, rcs)
	for _, rc := range rcs {
		if err := w.RT.Del(ctx, list, rc); err != nil {
			t.Fatalf("DEL %s: %v", rc.ContainerID, err)
		}
	}
	if leaks := w.leaks(t, list.Name, "brstorm", nil); len(leaks) > 0 {
		t.Errorf("after the last DELs, left:\n%s", strings.Join(leaks, "\n"))
	}
}

// wantKept checks that GC left the valid attachments whole: CHECK passes
// (addresses, masquerade, ports, isolation, name registered) and they
// reach their gateway.
func (w *world) wantKept(t *testing.T, list *libcni.NetworkConfigList, rcs []*libcni.RuntimeConf) {
	t.Helper()
	for _, rc := range rcs {
		if err := w.RT.Check(context.Background(), list, rc); err != nil {
			t.Errorf("CHECK %s after GC: %v", rc.ContainerID, err)
		}
		if out, err := exec.Command("ip", "netns", "exec", filepath.Base(rc.NetNS), "ping", "-c", "1", "-W", "2", "10.60.0.1").CombinedOutput(); err != nil {
			t.Errorf("%s: ping gateway after GC: %v %s", rc.ContainerID, err, out)
		}
		if _, err := os.Stat(filepath.Join(w.DataDir, "dnsname", "registry", list.Name, rc.ContainerID+"@eth0.json")); err != nil {
			t.Errorf("%s: name not registered after GC: %v", rc.ContainerID, err)
		}
	}
}
