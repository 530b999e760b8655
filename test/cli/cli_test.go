package cli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/inspect"
)

const (
	webID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	dbID  = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

// TestInspect: two containers attached through libcni; inspect shows
// exactly them, with the addresses of their results, the MACs the kernel
// has, their names and the published port; ls and ps agree; port prints
// Docker's line. The text and JSON forms are golden files.
func TestInspect(t *testing.T) {
	w := newWorld(t)
	br := nstest.UniqueName("br")
	list := w.network(t, "web-net", br, "10.231.0.0/24")
	web := w.run(t, list, webID, "web", mapping{HostPort: 3000, ContainerPort: 80, Protocol: "tcp"})
	db := w.run(t, list, dbID, "db")

	n := w.inspect(t, "web-net")
	if n.Driver != "bridge" || !slices.Equal(n.Subnets, []string{"10.231.0.0/24"}) || !slices.Equal(n.Gateways, []string{"10.231.0.1"}) {
		t.Fatalf("network: driver %q subnets %v gateways %v", n.Driver, n.Subnets, n.Gateways)
	}
	if n.LiveAttachments != 2 || len(n.Attachments) != 2 {
		t.Fatalf("attachments: %d live of %d, want 2 of 2", n.LiveAttachments, len(n.Attachments))
	}
	if len(n.IPAM.Ranges) != 1 || n.IPAM.Ranges[0].Used != 2 || n.IPAM.Ranges[0].Size != "253" {
		t.Fatalf("ipam ranges %+v, want one with 2 of 253 used", n.IPAM.Ranges)
	}
	for _, c := range []*ctr{web, db} {
		i := slices.IndexFunc(n.Attachments, func(a inspect.Attachment) bool { return a.ContainerID == c.id })
		if i < 0 {
			t.Fatalf("%s not in inspect", c.name)
		}
		a := n.Attachments[i]
		if a.Name != c.name || a.IfName != "eth0" || a.Netns != c.ns.Path || a.State != inspect.Live {
			t.Errorf("%s: name %q ifname %q netns %q state %q (%s)", c.name, a.Name, a.IfName, a.Netns, a.State, a.Reason)
		}
		if want := c.res.IPs[0].Address.String(); !slices.Equal(a.IPs, []string{want}) {
			t.Errorf("%s: ips %v, want %s", c.name, a.IPs, want)
		}
		if mac := c.mac(t); a.MAC != mac {
			t.Errorf("%s: mac %s, kernel has %s", c.name, a.MAC, mac)
		}
		// The result lists bridge, host veth, container interface.
		if a.HostVeth == "" || a.HostVeth != c.res.Interfaces[1].Name {
			t.Errorf("%s: host veth %q, result says %q", c.name, a.HostVeth, c.res.Interfaces[1].Name)
		}
	}
	wa := n.Attachments[slices.IndexFunc(n.Attachments, func(a inspect.Attachment) bool { return a.ContainerID == webID })]
	if len(wa.Ports) != 1 || wa.Ports[0] != (inspect.Port{ContainerPort: 80, Protocol: "tcp", HostIP: "0.0.0.0", HostPort: 3000}) {
		t.Errorf("web ports %+v, want 80/tcp -> 0.0.0.0:3000", wa.Ports)
	}

	if got := w.mustBerth(t, "port", "web"); got != "80/tcp -> 0.0.0.0:3000\n" {
		t.Errorf("berth port web: %q", got)
	}
	if got := w.mustBerth(t, "port", webID[:6], "80"); got != "0.0.0.0:3000\n" {
		t.Errorf("berth port <prefix> 80: %q", got)
	}
	if got := w.mustBerth(t, "port", "db"); got != "" {
		t.Errorf("berth port db: %q, want nothing", got)
	}
	if _, _, code := w.berth(t, "port", "nosuch"); code != 3 {
		t.Errorf("berth port nosuch: exit %d, want 3", code)
	}
	if _, _, code := w.berth(t, "network", "inspect", "nosuch"); code != 3 {
		t.Errorf("berth network inspect nosuch: exit %d, want 3", code)
	}
	if _, _, code := w.berth(t, "network", "inspect"); code != 2 {
		t.Errorf("berth network inspect without a name: exit %d, want 2", code)
	}
	if got := w.mustBerth(t, "network", "inspect", "web-net", "--format", "{{.Name}} {{.LiveAttachments}} {{join .Subnets \",\"}}"); got != "web-net 2 10.231.0.0/24\n" {
		t.Errorf("--format: %q", got)
	}
	ls := w.mustBerth(t, "network", "ls")
	if !strings.Contains(ls, "web-net") || !strings.Contains(ls, "10.231.0.0/24") {
		t.Errorf("ls:\n%s", ls)
	}

	golden(t, "inspect.txt", w.normalise(w.mustBerth(t, "network", "inspect", "web-net"), br))
	golden(t, "inspect.json", w.normalise(w.mustBerth(t, "network", "inspect", "--json", "web-net"), br))
	golden(t, "ls.txt", w.normalise(w.mustBerth(t, "network", "ls")))
	golden(t, "ps.txt", w.normalise(w.mustBerth(t, "ps")))
}

// TestStale: a container whose namespace is deleted without DEL shows as
// stale with the reason; gc without --force only says what it would do;
// with --force it runs the chain's DEL, after which the records, the
// reservation and the published port are gone and the live container is
// untouched.
func TestStale(t *testing.T) {
	w := newWorld(t)
	list := w.network(t, "stale-net", nstest.UniqueName("br"), "10.232.0.0/24")
	keep := w.run(t, list, webID, "keep")
	gone := w.run(t, list, dbID, "gone", mapping{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"})
	gone.kill(t)

	n := w.inspect(t, "stale-net")
	if n.LiveAttachments != 1 || len(n.Attachments) != 2 {
		t.Fatalf("%d live of %d, want 1 of 2", n.LiveAttachments, len(n.Attachments))
	}
	for _, a := range n.Attachments {
		switch a.ContainerID {
		case keep.id:
			if a.State != inspect.Live {
				t.Errorf("keep: state %s (%s)", a.State, a.Reason)
			}
		case gone.id:
			if a.State != inspect.Stale || !strings.Contains(a.Reason, "netns") {
				t.Errorf("gone: state %s (%s), want stale: netns gone", a.State, a.Reason)
			}
		}
	}
	plan := w.mustBerth(t, "gc")
	if !strings.Contains(plan, "would DEL "+dbID[:12]) || strings.Contains(plan, webID[:12]) {
		t.Fatalf("gc dry run:\n%s", plan)
	}
	if n := w.inspect(t, "stale-net"); len(n.Attachments) != 2 {
		t.Fatalf("dry run changed something: %d attachments", len(n.Attachments))
	}
	w.mustBerth(t, "gc", "--force")
	n = w.inspect(t, "stale-net")
	if len(n.Attachments) != 1 || n.Attachments[0].ContainerID != keep.id || n.Attachments[0].State != inspect.Live {
		t.Fatalf("after gc: %+v", n.Attachments)
	}
	if len(n.IPAM.Reservations) != 1 || n.IPAM.Reservations[0].ContainerID != keep.id {
		t.Errorf("after gc: reservations %+v", n.IPAM.Reservations)
	}
	if _, _, code := w.berth(t, "port", "gone"); code != 3 {
		t.Errorf("port of a collected container: exit %d, want 3", code)
	}
	nstest.Ping(t, &nstest.NS{NS: keep.ns}, "10.232.0.1")

	// The conflist removed while a container is attached: the network is
	// still listed, from its registry (named by the flag: the config that
	// named it is gone), as having no config.
	if err := os.Remove(filepath.Join(w.confDir, "stale-net.conflist")); err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(w.DataDir, "attachments")
	out, errOut, code := w.berth(t, "network", "ls", "--attachments-dir", reg)
	if code != 0 || !strings.Contains(out, "stale-net  (no config)") || !strings.Contains(errOut, "no config") {
		t.Errorf("ls without the conflist: exit %d\n%s%s", code, out, errOut)
	}
	if ps, _, _ := w.berth(t, "ps", "--attachments-dir", reg); !strings.Contains(ps, "keep") || !strings.Contains(ps, "live") {
		t.Errorf("ps without the conflist:\n%s", ps)
	}
}

// TestPrune: network A has a live container, B only a stale one. prune
// without --force changes nothing; with it, B's stale attachment is DELed
// and B's nftables elements, registry directory and bridge (berth's,
// empty) go, while A's all stay and A's container still reaches its
// gateway and its published port.
func TestPrune(t *testing.T) {
	w := newWorld(t)
	brA, brB := nstest.UniqueName("bra"), nstest.UniqueName("brb")
	la := w.network(t, "net-a", brA, "10.233.0.0/24")
	lb := w.network(t, "net-b", brB, "10.234.0.0/24")
	a := w.run(t, la, webID, "a", mapping{HostPort: 3000, ContainerPort: 80, Protocol: "tcp"})
	a.serve(t)
	b := w.run(t, lb, dbID, "b", mapping{HostPort: 3001, ContainerPort: 80, Protocol: "tcp"})
	b.kill(t)

	before := w.Host.MustExec(t, "nft", "list", "table", "inet", "berth")
	if !strings.Contains(before, "net-b/") || !strings.Contains(before, "net-a/") {
		t.Fatalf("setup: both networks should have tagged elements:\n%s", before)
	}
	plan := w.mustBerth(t, "network", "prune")
	for _, want := range []string{"would DEL " + dbID[:12], "would remove", "net-b", "would delete bridge " + brB} {
		if !strings.Contains(plan, want) {
			t.Errorf("prune plan lacks %q:\n%s", want, plan)
		}
	}
	if strings.Contains(plan, "net-a") || strings.Contains(plan, brA) {
		t.Errorf("prune plan touches net-a:\n%s", plan)
	}
	if got := w.Host.MustExec(t, "nft", "list", "table", "inet", "berth"); got != before {
		t.Fatalf("dry run changed nftables")
	}

	out := w.mustBerth(t, "network", "prune", "--force")
	after := w.Host.MustExec(t, "nft", "list", "table", "inet", "berth")
	if strings.Contains(after, "net-b/") || !strings.Contains(after, "net-a/") {
		t.Fatalf("after prune (%s):\n%s", out, after)
	}
	for _, p := range []string{"net-b", "net-b.lock"} {
		if _, err := os.Stat(filepath.Join(w.DataDir, "attachments", p)); !os.IsNotExist(err) {
			t.Errorf("net-b's registry %s after prune: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(w.DataDir, "attachments", "net-a", webID+"@eth0.json")); err != nil {
		t.Errorf("net-a's entry after prune: %v", err)
	}
	if _, err := w.Host.Exec("ip", "link", "show", brB); err == nil {
		t.Errorf("bridge %s of the pruned network is still there", brB)
	}
	w.Host.MustExec(t, "ip", "link", "show", brA)
	if nb := w.inspect(t, "net-b"); len(nb.Attachments) != 0 || len(nb.IPAM.Reservations) != 0 {
		t.Errorf("net-b after prune: %d attachments, %d reservations", len(nb.Attachments), len(nb.IPAM.Reservations))
	}
	if na := w.inspect(t, "net-a"); na.LiveAttachments != 1 {
		t.Errorf("net-a after prune: %d live", na.LiveAttachments)
	}
	if got, err := httpGet(w.out, fmt.Sprintf("http://%s:3000/", hostOutIP)); err != nil || got != "hello from "+webID {
		t.Errorf("net-a's published port after prune: %q, %v", got, err)
	}
	// A bridge berth did not create is never removed, even empty.
	own := nstest.UniqueName("own")
	w.Host.MustExec(t, "ip", "link", "add", own, "type", "bridge")
	w.network(t, "net-c", own, "10.235.0.0/24")
	if out := w.mustBerth(t, "network", "prune", "--force"); !strings.Contains(out, "keep bridge "+own) {
		t.Errorf("prune of a foreign bridge's network:\n%s", out)
	}
	w.Host.MustExec(t, "ip", "link", "show", own)
}

// TestInspectDNSNames: on a Podman network with dnsname, inspect shows
// each container's DNS names and the aliases the runtime gave, from
// dnsname's registry.
func TestInspectDNSNames(t *testing.T) {
	w := newWorld(t)
	list := w.networkFrom(t, "podman-network.conflist", "dns-net", nstest.UniqueName("br"), "10.238.0.0/24",
		func(m map[string]any) {
			dn := m["plugins"].([]any)[4].(map[string]any)
			// Forwarding goes to a closed port of the private host.
			dn["upstreams"] = []any{"127.0.0.1:5353"}
		})
	w.run(t, list, webID, "web")
	w.runAliased(t, list, dbID, "db", "database", "postgres")

	n := w.inspect(t, "dns-net")
	if n.StateDirs.DNS == "" {
		t.Fatal("no dnsname registry dir in the view")
	}
	for _, a := range n.Attachments {
		switch a.ContainerID {
		case webID:
			if !slices.Contains(a.Names, "web") || len(a.Aliases) != 0 {
				t.Errorf("web: names %v aliases %v", a.Names, a.Aliases)
			}
		case dbID:
			if !slices.Contains(a.Names, "db") || !slices.Equal(a.Aliases, []string{"database", "postgres"}) {
				t.Errorf("db: names %v aliases %v, want db and [database postgres]", a.Names, a.Aliases)
			}
		default:
			t.Errorf("unexpected attachment %s", a.ContainerID)
		}
	}
	if len(n.Attachments) != 2 {
		t.Fatalf("%d attachments, want 2", len(n.Attachments))
	}
}

// TestInspectTunedMAC: a MAC set by tuning after the bridge recorded the
// attachment is the kernel's, shown as such; the attachment stays live
// (gc must never DEL a live container because a later plugin changed its
// MAC).
func TestInspectTunedMAC(t *testing.T) {
	w := newWorld(t)
	const mac = "02:42:ac:11:00:99"
	list := w.network(t, "tuned-net", nstest.UniqueName("br"), "10.239.0.0/24", func(m map[string]any) {
		m["plugins"] = append(m["plugins"].([]any), map[string]any{"type": "tuning", "mac": mac, "dataDir": w.DataDir + "/tuning"})
	})
	c := w.run(t, list, webID, "tuned")
	if got := c.mac(t); got != mac {
		t.Fatalf("setup: kernel MAC %s, want tuning's %s", got, mac)
	}
	n := w.inspect(t, "tuned-net")
	if len(n.Attachments) != 1 || n.Attachments[0].State != inspect.Live || n.Attachments[0].MAC != mac {
		t.Fatalf("attachments %+v, want one live with MAC %s", n.Attachments, mac)
	}
	if out := w.mustBerth(t, "gc"); strings.Contains(out, "would DEL") {
		t.Fatalf("gc plans to DEL a live container:\n%s", out)
	}
}

// TestPruneIsolation: a network with the firewall plugin (same-bridge)
// takes its bridge out of the isolation sets with its last container's DEL
// (the firewall tears a network's state down with its last attachment);
// prune then finds nothing of it to remove, and leaves the live network's
// elements alone.
func TestPruneIsolation(t *testing.T) {
	w := newWorld(t)
	brX, brY := nstest.UniqueName("brx"), nstest.UniqueName("bry")
	lx := w.networkFrom(t, "docker-network.conflist", "iso-x", brX, "10.240.0.0/24")
	ly := w.networkFrom(t, "docker-network.conflist", "iso-y", brY, "10.241.0.0/24")
	x := w.run(t, lx, webID, "x")
	w.run(t, ly, dbID, "y")
	sets := func() string {
		return w.Host.MustExec(t, "nft", "list", "set", "inet", "berth", "fw-bridges") +
			w.Host.MustExec(t, "nft", "list", "set", "inet", "berth", "fw-same")
	}
	if s := sets(); !strings.Contains(s, brX) || !strings.Contains(s, brY) {
		t.Fatalf("setup: both bridges should be in the isolation sets:\n%s", s)
	}
	if err := w.RT.Del(context.Background(), lx, x.rc); err != nil {
		t.Fatal(err)
	}
	if s := sets(); strings.Contains(s, brX) || !strings.Contains(s, brY) {
		t.Fatalf("after the last DEL of iso-x, want %s gone and %s kept:\n%s", brX, brY, s)
	}
	out := w.mustBerth(t, "network", "prune", "--force")
	if strings.Contains(out, "iso-y") {
		t.Errorf("prune touches the live network:\n%s", out)
	}
	if s := sets(); !strings.Contains(s, brY) {
		t.Errorf("after prune, want %s kept:\n%s", brY, s)
	}
}
