package bridge_test

import (
	"context"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/internal/sandbox"
)

// Swapping berth into /opt/cni/bin on a live node: a container attached by
// the reference plugins keeps working, a new one gets another address from
// the same store on the same bridge, berth's CHECK and DEL handle the
// reference's attachment (random host veth name, its reservation file),
// and nothing of it is left behind.
func TestSwapFromReference(t *testing.T) {
	e := nstest.NewEnv(t)
	refDir := nstest.BuildReference(t, "main/bridge", "ipam/host-local")
	// One libcni cache for both, as on a node where containerd stays and
	// only the binaries change.
	cache := t.TempDir()
	ref := sandbox.NewRuntime(e.Host.NS, cache, refDir)
	berth := sandbox.NewRuntime(e.Host.NS, cache, nstest.CNIPath(t))
	// ipMasq off: the reference masquerades with per-container iptables
	// chains that berth's DEL does not know (see README).
	list := e.Conflist(nstest.Example(t, "docker-default.conflist"), func(m map[string]any) {
		m["plugins"] = m["plugins"].([]any)[:1]
		m["plugins"].([]any)[0].(map[string]any)["ipMasq"] = false
	})
	ctx := context.Background()

	old := &nstest.Container{NS: nstest.NewNS(t, "old"), ID: "made-by-reference"}
	old.RC = nstest.Attachment(old.ID, old.NS, "eth0")
	res, err := ref.Add(ctx, list, old.RC)
	if err != nil {
		t.Fatalf("reference ADD: %v", err)
	}
	old.Res = res
	t.Cleanup(func() { _ = berth.Del(ctx, list, old.RC) })

	nu := &nstest.Container{NS: nstest.NewNS(t, "new"), ID: "made-by-berth"}
	nu.RC = nstest.Attachment(nu.ID, nu.NS, "eth0")
	if nu.Res, err = berth.Add(ctx, list, nu.RC); err != nil {
		t.Fatalf("berth ADD next to the reference's container: %v", err)
	}
	t.Cleanup(func() { _ = berth.Del(ctx, list, nu.RC) })

	if old.IP(t, "4") == nu.IP(t, "4") {
		t.Fatalf("both containers got %s", nu.IP(t, "4"))
	}
	nstest.Ping(t, nu.NS, old.IP(t, "4"))
	nstest.Ping(t, old.NS, nu.IP(t, "4"))
	if err := berth.Check(ctx, list, old.RC); err != nil {
		t.Fatalf("berth CHECK of the reference's attachment: %v", err)
	}

	oldVeth := old.Res.Interfaces[1].Name
	if err := berth.Del(ctx, list, old.RC); err != nil {
		t.Fatalf("berth DEL of the reference's attachment: %v", err)
	}
	if strings.Contains(links(t, e.Host), oldVeth) {
		t.Fatalf("the reference's host veth %s is left after berth's DEL", oldVeth)
	}
	files := ipamFiles(e, "bridge")
	if len(files) != 1 || files[0] != nu.IP(t, "4") {
		t.Fatalf("reservations after DEL: %v, want only %s", files, nu.IP(t, "4"))
	}
	nstest.Ping(t, nu.NS, "172.17.0.1")
}
