package overlay_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
)

// TestVersions: ADD (and CHECK from 0.4.0) in every CNI version berth
// speaks; GC and STATUS in 1.1.0.
func TestVersions(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	peer := h2.Run(h2.list(raw), "peer")
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		list := h1.Conflist(raw, nstest.SetVersion(v))
		ctr := h1.Run(list, "v"+strings.ReplaceAll(v, ".", ""))
		nstest.Ping(t, ctr.NS, peer.IP(t, "4"))
		if v != "0.3.0" && v != "0.3.1" {
			if err := h1.RT.Check(context.Background(), list, ctr.RC); err != nil {
				t.Fatalf("CHECK %s: %v", v, err)
			}
		}
	}
	list := h1.list(raw)
	if err := h1.RT.Status(context.Background(), list); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
}

// TestCheckGCStatus: CHECK notices a missing piece; GC forgets what is not
// valid (reservation, attachment, the daemon's user) and keeps the rest;
// STATUS without a lease and without etcd is code 50.
func TestCheckGCStatus(t *testing.T) {
	c := newCluster(t)
	e := c.startEtcd()
	h1 := c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	list := h1.list(raw)
	keep := h1.Run(list, "keep")
	gone := h1.Run(list, "gone")

	h1.Host.MustExec(t, "ip", "link", "set", "berthvx42", "down")
	h1.Host.MustExec(t, "ip", "link", "del", "berthvx42")
	if err := h1.RT.Check(context.Background(), list, keep.RC); err == nil || !strings.Contains(err.Error(), "berthvx42") {
		t.Fatalf("CHECK without the VXLAN device: %v", err)
	}
	// The next ADD makes the device again (and the daemon republishes).
	h1.Run(list, "again")
	if err := h1.RT.Check(context.Background(), list, keep.RC); err != nil {
		t.Fatalf("CHECK: %v", err)
	}

	ipamDir := filepath.Join(h1.DataDir, "vxlan-overlay", "ipam", "ovl")
	goneIP := filepath.Join(ipamDir, gone.IP(t, "4"))
	if _, err := os.Stat(goneIP); err != nil {
		t.Fatalf("reservation of %s: %v", gone.ID, err)
	}
	// GC with keep and again valid: gone's leftovers go (its veth is the
	// runtime's to remove with its namespace; GC is about state).
	again := libcni.RuntimeConf{ContainerID: "again", IfName: "eth0"}
	if err := h1.RT.GC(context.Background(), list, keep.RC, &again); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if _, err := os.Stat(goneIP); !os.IsNotExist(err) {
		t.Fatalf("GC left %s's reservation: %v", gone.ID, err)
	}
	atts, _ := os.ReadDir(filepath.Join(h1.DataDir, "vxlan-overlay", "attachments", "ovl"))
	if len(atts) != 2 {
		t.Fatalf("attachments after GC: %v, want keep and again", atts)
	}
	if _, err := os.Stat(filepath.Join(ipamDir, keep.IP(t, "4"))); err != nil {
		t.Fatalf("GC removed a valid reservation: %v", err)
	}

	e.stop(t)
	h2 := c.addHost()
	err := h2.RT.Status(context.Background(), h2.list(raw))
	if cniCode(err) != 50 || !strings.Contains(err.Error(), e.url) {
		t.Fatalf("STATUS with no lease and etcd down: %v; want code 50 naming %s", err, e.url)
	}
	if err := h1.RT.Status(context.Background(), list); err != nil {
		t.Fatalf("STATUS of a host holding its lease, etcd down: %v", err)
	}
}

// TestBadConfig: errors name the field and value, with code 7; a failed
// ADD (etcd down, no lease) leaves no device, veth, reservation or
// attachment behind; DEL without ADD succeeds and creates nothing.
func TestBadConfig(t *testing.T) {
	c := newCluster(t)
	e := c.startEtcd()
	h := c.addHost()
	for _, tc := range []struct {
		patch func(map[string]any)
		want  string
	}{
		{func(p map[string]any) { p["vni"] = 0 }, "vni"},
		{func(p map[string]any) { p["vni"] = 1 << 24 }, "vni"},
		{func(p map[string]any) { p["subnet"] = "10.96.0.0" }, "subnet"},
		{func(p map[string]any) { p["subnet"] = "fd00::/64" }, "subnet"},
		{func(p map[string]any) { p["hostSubnetLen"] = 16 }, "hostSubnetLen"},
		{func(p map[string]any) { p["underlay"] = "nosuch0" }, "underlay"},
		{func(p map[string]any) { p["store"] = map[string]any{"type": "consul"} }, "store.type"},
		{func(p map[string]any) { p["store"] = map[string]any{"type": "etcd"} }, "store.endpoints"},
		{func(p map[string]any) { p["ipam"] = map[string]any{"type": "host-local"} }, "ipam"},
	} {
		_, err := h.tryRun(h.list(c.conf("bad", 42, "10.96.0.0/16", tc.patch)), "bad")
		if cniCode(err) != 7 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want code 7 naming %s, got %v", tc.want, err)
		}
	}

	e.stop(t)
	list := h.list(c.conf("ovl", 42, "10.96.0.0/16"))
	if _, err := h.tryRun(list, "fails"); cniCode(err) != 11 {
		t.Fatalf("ADD with etcd down and no lease: %v, want code 11", err)
	}
	links := h.Host.MustExec(t, "ip", "-o", "link")
	if strings.Contains(links, "berthvx42") || strings.Contains(links, "veth") {
		t.Fatalf("a failed ADD left links:\n%s", links)
	}
	for _, d := range []string{"attachments/ovl", "ipam/ovl"} {
		ents, _ := os.ReadDir(filepath.Join(h.DataDir, "vxlan-overlay", d))
		for _, e := range ents {
			if e.Name() != "lock" && !strings.HasPrefix(e.Name(), ".") {
				t.Fatalf("a failed ADD left %s/%s", d, e.Name())
			}
		}
	}
	ghost := nstest.NewNS(t, "ctr")
	if err := h.RT.Del(context.Background(), list, nstest.Attachment("ghost", ghost, "eth0")); err != nil {
		t.Fatalf("DEL without ADD: %v", err)
	}
}
