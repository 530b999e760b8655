package macvlan_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
)

// These tests need 802.1q: they skip where the kernel lacks it and run in
// the VM lane (`make test-vm`), where skipping is a failure.

// vlan200 is a network on VLAN 200 written the other way: master is the
// physical parent and vlan the id.
func (l *lan) vlan200List(t *testing.T) *libcni.NetworkConfigList {
	t.Helper()
	return l.Conflist(l.conflist(t, "macvlan100.conflist", setName("macvlan200"),
		nstest.SetField(0, "master", parent), nstest.SetField(0, "vlan", 200),
		rangeOf(subnet200, "10.0.200.10", "10.0.200.50", router200)))
}

// TestVLANTraffic: the seed's macvlan100 network and a VLAN 200 one; each
// container reaches the router on its VLAN and nothing on the other; the
// sub-interfaces are made on demand, carry berth's alias, and go with
// their last container.
func TestVLANTraffic(t *testing.T) {
	l := newLAN(t)
	l.withVLANs(t)
	v100 := l.Conflist(l.conflist(t, "macvlan100.conflist"))
	v200 := l.vlan200List(t)

	a := l.Run(v100, "vlan-a")
	b := l.Run(v100, "vlan-b")
	c := l.Run(v200, "vlan-c")
	if ip := a.IP(t, "4"); !strings.HasPrefix(ip, "10.0.0.") {
		t.Fatalf("macvlan100 address %s, want one in 10.0.0.0/25", ip)
	}
	for _, name := range []string{vlan100, vlan200} {
		lk := l.hostLink(t, name)
		if lk == nil {
			t.Fatalf("%s was not made", name)
		}
		if lk.Type() != "vlan" || lk.Attrs().Alias != "berth:macvlan:vlan" {
			t.Fatalf("%s: type %s alias %q, want a vlan with berth's alias", name, lk.Type(), lk.Attrs().Alias)
		}
	}

	nstest.Ping(t, a.NS, router100)
	nstest.Ping(t, b.NS, router100)
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	nstest.Ping(t, c.NS, router200)
	// Across VLANs, even with on-link routes that would work on one L2.
	a.NS.MustExec(t, "ip", "route", "add", subnet200, "dev", "eth0")
	c.NS.MustExec(t, "ip", "route", "add", "10.0.0.0/24", "dev", "eth0")
	// Nor the untagged network (the router answers ARP only for the
	// addresses of the interface asked on).
	a.NS.MustExec(t, "ip", "route", "add", "192.168.1.0/24", "dev", "eth0")
	noPings(t, []noPing{{a.NS, router200}, {a.NS, c.IP(t, "4")}, {c.NS, router100}, {c.NS, a.IP(t, "4")}, {a.NS, routerIP}})

	for _, x := range []*nstest.Container{a, b} {
		if err := l.RT.Del(context.Background(), v100, x.RC); err != nil {
			t.Fatal(err)
		}
	}
	if l.hostLink(t, vlan100) != nil {
		t.Fatalf("%s outlived its last container", vlan100)
	}
	if l.hostLink(t, vlan200) == nil {
		t.Fatalf("%s went with VLAN 100's containers", vlan200)
	}
	nstest.Ping(t, c.NS, router200)
	if err := l.RT.Del(context.Background(), v200, c.RC); err != nil {
		t.Fatal(err)
	}
	if l.hostLink(t, vlan200) != nil {
		t.Fatalf("%s outlived its last container", vlan200)
	}
	if files := l.stateFiles(t); len(files) != 0 {
		t.Fatalf("state left: %v", files)
	}
}

// TestVLANConcurrent: 16 containers at once across two networks on VLAN
// 100. The sub-interface is made once, is never removed while a container
// uses it (a macvlan's parent cannot go without taking the macvlan with
// it, and netlink would report it), and goes exactly with the last user.
func TestVLANConcurrent(t *testing.T) {
	l := newLAN(t)
	l.withVLANs(t)
	lists := []*libcni.NetworkConfigList{
		l.Conflist(l.conflist(t, "macvlan100.conflist", setName("vlanA"), rangeOf("10.0.0.0/24", "10.0.0.10", "10.0.0.60", router100))),
		l.Conflist(l.conflist(t, "macvlan100.conflist", setName("vlanB"), rangeOf("10.0.0.0/24", "10.0.0.100", "10.0.0.150", router100))),
	}
	const n = 16
	ctrs := make([]*nstest.NS, n)
	rcs := make([]*libcni.RuntimeConf, n)
	for i := range ctrs {
		ctrs[i] = nstest.NewNS(t, "ctr")
		rcs[i] = nstest.Attachment(fmt.Sprintf("conc-%d", i), ctrs[i], "eth0")
		list, rc := lists[i%2], rcs[i]
		t.Cleanup(func() { _ = l.RT.Del(context.Background(), list, rc) })
	}
	ev := watchLink(t, l.Host, vlan100)
	run := func(what string, idx []int, f func(i int) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for _, i := range idx {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = f(i)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s %d: %v", what, i, err)
			}
		}
	}
	add := func(i int) error {
		_, err := l.RT.Add(context.Background(), lists[i%2], rcs[i])
		return err
	}
	del := func(i int) error { return l.RT.Del(context.Background(), lists[i%2], rcs[i]) }
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}

	// 16 ADDs at once: one sub-interface, made once, 16 users; a
	// container of each network reaches the router through it.
	run("ADD", all, add)
	nstest.Ping(t, ctrs[0], router100)
	nstest.Ping(t, ctrs[1], router100)
	if created, deleted := ev.counts(t, l.Host); created != 1 || deleted != 0 {
		t.Fatalf("after 16 ADDs: %s made %d times and deleted %d times, want 1 and 0", vlan100, created, deleted)
	}
	if users := l.stateUsers(t, vlan100); len(users) != n {
		t.Fatalf("users of %s: got %d %v, want %d", vlan100, len(users), users, n)
	}
	// 15 DELs at once: it stays for the last one.
	run("DEL", all[1:], del)
	if created, deleted := ev.counts(t, l.Host); created != 1 || deleted != 0 {
		t.Fatalf("after 15 DELs: %s made %d times and deleted %d times, want 1 and 0", vlan100, created, deleted)
	}
	if users := l.stateUsers(t, vlan100); !slices.Equal(users, []string{"vlanA/conc-0/eth0"}) {
		t.Fatalf("users of %s: got %v, want vlanA/conc-0/eth0", vlan100, users)
	}
	nstest.Ping(t, ctrs[0], router100)

	// Churn: the others come and go again, concurrently, while conc-0
	// holds the sub-interface.
	run("ADD+DEL", all[1:], func(i int) error {
		if err := add(i); err != nil {
			return err
		}
		return del(i)
	})
	if created, deleted := ev.counts(t, l.Host); created != 1 || deleted != 0 {
		t.Fatalf("after churn: %s made %d times and deleted %d times, want 1 and 0", vlan100, created, deleted)
	}
	nstest.Ping(t, ctrs[0], router100)

	// The last user goes, and the sub-interface with it.
	if err := del(0); err != nil {
		t.Fatal(err)
	}
	if created, deleted := ev.counts(t, l.Host); created != 1 || deleted != 1 {
		t.Fatalf("after the last DEL: %s made %d times and deleted %d times, want 1 and 1", vlan100, created, deleted)
	}
	if l.hostLink(t, vlan100) != nil {
		t.Fatalf("%s outlived its last user", vlan100)
	}
	if files := l.stateFiles(t); len(files) != 0 {
		t.Fatalf("state left: %v", files)
	}
	for _, name := range []string{"vlanA", "vlanB"} {
		if got := l.ipamFiles(t, name); len(got) != 0 {
			t.Fatalf("reservations left in %s: %v", name, got)
		}
	}
}

// TestVLANPreexisting: a sub-interface someone else made is used and never
// removed, also by GC.
func TestVLANPreexisting(t *testing.T) {
	l := newLAN(t)
	l.withVLANs(t)
	l.Host.MustExec(t, "ip", "link", "add", "link", parent, "name", vlan100, "type", "vlan", "id", "100")
	l.Host.MustExec(t, "ip", "link", "set", vlan100, "up")
	list := l.Conflist(l.conflist(t, "macvlan100.conflist"))
	c := l.Run(list, "pre")
	nstest.Ping(t, c.NS, router100)
	if err := l.RT.Del(context.Background(), list, c.RC); err != nil {
		t.Fatal(err)
	}
	if err := l.RT.GC(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	if lk := l.hostLink(t, vlan100); lk == nil || lk.Attrs().Alias != "" {
		t.Fatalf("the admin's %s was removed or relabelled: %v", vlan100, lk)
	}
}

// TestVLANCheck: CHECK notices a removed sub-interface (and the macvlan
// the kernel removed with it).
func TestVLANCheck(t *testing.T) {
	l := newLAN(t)
	l.withVLANs(t)
	list := l.Conflist(l.conflist(t, "macvlan100.conflist"))
	c := l.Run(list, "vcheck")
	if err := l.RT.Check(context.Background(), list, c.RC); err != nil {
		t.Fatalf("CHECK of a healthy attachment: %v", err)
	}
	l.Host.MustExec(t, "ip", "link", "del", vlan100)
	err := l.RT.Check(context.Background(), list, c.RC)
	if err == nil || !strings.Contains(err.Error(), "VLAN 100 sub-interface "+vlan100) {
		t.Fatalf("CHECK after removing %s: got %v, want it named", vlan100, err)
	}
}

// TestVLANFailedAdd: an ADD that fails after making the sub-interface (its
// IPAM range is full) removes it and leaves no link, no reservation, no
// state; one that fails while another network uses the sub-interface
// leaves it to that user.
func TestVLANFailedAdd(t *testing.T) {
	l := newLAN(t)
	l.withVLANs(t)
	// One address, taken by someone else: every ADD fails in IPAM, after
	// the sub-interface is made (IPAM runs alongside the netlink work).
	full := l.Conflist(l.conflist(t, "macvlan100.conflist", setName("full"), rangeOf("10.0.0.0/24", "10.0.0.10", "10.0.0.10", router100)))
	dir := filepath.Join(l.DataDir, "networks", "full")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "10.0.0.10"), []byte("someone-else\r\neth0"), 0o600); err != nil {
		t.Fatal(err)
	}
	failAdd := func(id string) {
		t.Helper()
		ctr := nstest.NewNS(t, "ctr")
		_, err := l.RT.Add(context.Background(), full, nstest.Attachment(id, ctr, "eth0"))
		if err == nil || !strings.Contains(err.Error(), "no free address") {
			t.Fatalf("ADD on a full range: got %v, want the IPAM's error", err)
		}
		if out := ctr.MustExec(t, "ip", "-o", "link"); strings.Contains(out, "eth0") {
			t.Fatalf("failed ADD left a link: %s", out)
		}
	}
	failAdd("full-1")
	if l.hostLink(t, vlan100) != nil {
		t.Fatalf("a failed ADD left the %s it made", vlan100)
	}
	if files := l.stateFiles(t); len(files) != 0 {
		t.Fatalf("a failed ADD left state: %v", files)
	}
	if got := l.ipamFiles(t, "full"); !slices.Equal(got, []string{"10.0.0.10"}) {
		t.Fatalf("reservations: got %v, want only the one made by hand", got)
	}

	// Another network's container uses the sub-interface: a failed ADD
	// leaves it, and its user.
	ok := l.Conflist(l.conflist(t, "macvlan100.conflist"))
	c := l.Run(ok, "user")
	failAdd("full-2")
	if l.hostLink(t, vlan100) == nil {
		t.Fatalf("a failed ADD removed %s under another network's container", vlan100)
	}
	if users := l.stateUsers(t, vlan100); !slices.Equal(users, []string{"macvlan100/user/eth0"}) {
		t.Fatalf("users of %s: got %v", vlan100, users)
	}
	nstest.Ping(t, c.NS, router100)
}

// TestVLANCrash: a plugin killed (SIGKILL) right after making the
// sub-interface, before and after naming its owner, leaves nothing that
// GC does not clean: the sub-interface, its state and the reservation.
func TestVLANCrash(t *testing.T) {
	for _, point := range []string{"vlan-before-alias", "macvlan-after-vlan-create"} {
		t.Run(point, func(t *testing.T) {
			l := newLAN(t)
			l.withVLANs(t)
			crashDir := crashBin(t)
			rt := nstest.NewRuntime(t, l.Host)
			rt.CNI.Path = []string{crashDir}
			list := l.Conflist(l.conflist(t, "macvlan100.conflist"))
			ctr := nstest.NewNS(t, "ctr")
			rc := nstest.Attachment("crash", ctr, "eth0")
			t.Setenv("BERTH_CRASHPOINT", point)
			if _, err := rt.Add(context.Background(), list, rc); err == nil {
				t.Fatal("ADD succeeded through the crash point: is the binary built with -tags crashpoint?")
			}
			if l.hostLink(t, vlan100) == nil {
				t.Fatalf("the crash point was not reached: no %s", vlan100)
			}
			if users := l.stateUsers(t, vlan100); len(users) != 1 {
				t.Fatalf("intent not recorded before the crash: users %v", users)
			}
			os.Unsetenv("BERTH_CRASHPOINT")
			// The runtime never saw the attachment succeed: GC with no
			// valid attachment.
			if err := l.RT.GC(context.Background(), list); err != nil {
				t.Fatalf("GC: %v", err)
			}
			if l.hostLink(t, vlan100) != nil {
				t.Fatalf("GC left %s", vlan100)
			}
			if files := l.stateFiles(t); len(files) != 0 {
				t.Fatalf("GC left state: %v", files)
			}
			if got := l.ipamFiles(t, list.Name); len(got) != 0 {
				t.Fatalf("GC left reservations: %v", got)
			}
			if out := ctr.MustExec(t, "ip", "-o", "link"); strings.Contains(out, "eth0") {
				t.Fatalf("crash left a container link: %s", out)
			}
		})
	}
}

// EnvCrashPath names a directory with macvlan and host-local built with
// -tags crashpoint (the VM lane has no Go toolchain to build them).
const EnvCrashPath = "BERTH_CRASH_CNI_PATH"

// crashBin returns a directory holding macvlan built with -tags crashpoint
// and host-local.
func crashBin(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv(EnvCrashPath); dir != "" {
		return dir
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-tags", "crashpoint", "-o", dir+"/", "github.com/berthnet/berth/plugins/macvlan", "github.com/berthnet/berth/plugins/host-local")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the crash-point binaries: %v: %s", err, out)
	}
	return dir
}

type noPing struct {
	from *nstest.NS
	addr string
}

// noPings is nstest.NoPing for several pairs at once: each waits out its
// timeout, so they wait together.
func noPings(t *testing.T, pairs []noPing) {
	t.Helper()
	outs := make([]string, len(pairs))
	errs := make([]error, len(pairs))
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = p.from.Exec("ping", "-c", "1", "-W", "1", p.addr)
		}()
	}
	wg.Wait()
	for i, p := range pairs {
		if errs[i] == nil {
			t.Errorf("ping %s from %s succeeded, want no reply\n%s", p.addr, p.from.Name, outs[i])
		}
	}
}
