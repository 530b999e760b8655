// Package containermode_test tests the container-mode plugin end to end:
// a target attached by the real bridge through libcni, joiners attached by
// the real container-mode binary, real namespaces, real TCP on localhost.
package containermode_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// TestJoin is docker run --name web, then docker run --net=container:web:
// the joiner's path shows web's eth0 (same MAC, same 172.17.0.x), reaches
// web's localhost server, and the result says so.
func TestJoin(t *testing.T) {
	w := newWorld(t)
	web := w.run("web0123456789abcdef", "web")
	url := serveLocal(t, web.NS, "hello from web")
	j := w.joinOf("side0123456789", "sidecar", "web")

	if got, want := nsIno(t, j.NS.Path), nsIno(t, web.NS.Path); got != want {
		t.Fatalf("joiner path refers to netns inode %d, want web's %d", got, want)
	}
	if out := mustIn(t, j.NS.Path, "curl", "-sS", "--max-time", "3", url); out != "hello from web" {
		t.Fatalf("curl %s from the joiner: got %q, want %q", url, out, "hello from web")
	}
	// ip netns exec (what a user types for a named netns) sees it too.
	if out := j.NS.MustExec(t, "curl", "-sS", "--max-time", "3", url); out != "hello from web" {
		t.Fatalf("ip netns exec curl: got %q", out)
	}
	mac, addr := ifaceIn(t, j.NS.Path, "eth0")
	wantMAC := sandboxMAC(t, web.Res)
	if mac != wantMAC || addr != web.Res.IPs[0].Address.String() {
		t.Fatalf("joiner's eth0: got %s %s, want web's %s %s", mac, addr, wantMAC, web.Res.IPs[0].Address.String())
	}
	// The result reports web's stack, with the joiner's path as sandbox.
	if len(j.Res.Interfaces) != 1 || j.Res.Interfaces[0].Name != "eth0" || j.Res.Interfaces[0].Mac != wantMAC || j.Res.Interfaces[0].Sandbox != j.NS.Path {
		t.Fatalf("result interfaces: got %v, want eth0 %s in %s", j.Res.Interfaces, wantMAC, j.NS.Path)
	}
	if len(j.Res.IPs) != 1 || j.Res.IPs[0].Address.String() != web.Res.IPs[0].Address.String() || !j.Res.IPs[0].Gateway.Equal(web.Res.IPs[0].Gateway) {
		t.Fatalf("result IPs: got %v, want %v", j.Res.IPs, web.Res.IPs)
	}
	if fmt.Sprint(j.Res.Routes) != fmt.Sprint(web.Res.Routes) {
		t.Fatalf("result routes: got %v, want %v", j.Res.Routes, web.Res.Routes)
	}
	if err := w.RT.Check(context.Background(), w.join, j.RC); err != nil {
		t.Fatalf("CHECK: %v", err)
	}

	// DEL: the path is the runtime's own namespace again (no eth0), web
	// is untouched and still reachable, and a second DEL is fine.
	if err := w.RT.Del(context.Background(), w.join, j.RC); err != nil {
		t.Fatal(err)
	}
	if out, err := in(j.NS.Path, "ip", "link", "show", "eth0"); err == nil {
		t.Fatalf("after DEL the joiner's path still has eth0: %s", out)
	}
	if got := nsIno(t, j.NS.Path); got == nsIno(t, web.NS.Path) {
		t.Fatal("after DEL the joiner's path still refers to web's namespace")
	}
	nstest.Ping(t, w.Host, web.IP(t, "4"))
	if out := web.NS.MustExec(t, "curl", "-sS", "--max-time", "3", url); out != "hello from web" {
		t.Fatalf("web's own server after the joiner left: %q", out)
	}
	if err := w.RT.Del(context.Background(), w.join, j.RC); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
	if got := w.joins(); len(got) != 0 {
		t.Fatalf("joins left after DEL: %v", got)
	}
	if err := w.RT.Check(context.Background(), w.join, j.RC); err == nil {
		t.Fatal("CHECK after DEL succeeded")
	}
}

// TestResolve: the target named by full ID, unique ID prefix, name, and the
// three places the reference can come from.
func TestResolve(t *testing.T) {
	w := newWorld(t)
	web := w.run("f00dcafe0123456789", "web")
	cases := []struct {
		name string
		opt  func(*libcni.RuntimeConf)
	}{
		{"full ID", joining(web.ID)},
		{"ID prefix", joining("f00dca")},
		{"name", joining("web")},
		{"args.cni.container", func(rc *libcni.RuntimeConf) {}},
		{"runtimeConfig.container", func(rc *libcni.RuntimeConf) {
			rc.CapabilityArgs = map[string]any{"container": "web"}
		}},
	}
	withArgs := w.Conflist(nstest.Example(t, "docker-container-mode.conflist"), func(m map[string]any) {
		m["plugins"].([]any)[0].(map[string]any)["args"] = map[string]any{"cni": map[string]any{"container": "web"}}
	})
	for i, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			list := w.join
			if tt.name == "args.cni.container" {
				list = withArgs
			}
			c := &nstest.Container{NS: nstest.NewNS(t, "j"), ID: fmt.Sprintf("joiner%d", i)}
			rc := nstest.Attachment(c.ID, c.NS, "eth0")
			tt.opt(rc)
			res, err := w.RT.Add(context.Background(), list, rc)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.IPs[0].Address.String(); got != web.Res.IPs[0].Address.String() {
				t.Fatalf("joined %s, want web's %s", got, web.Res.IPs[0].Address.String())
			}
			if err := w.RT.Del(context.Background(), list, rc); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestJoinerOfJoiner: --net=container:B where B itself joined A resolves
// to A, and survives B leaving.
func TestJoinerOfJoiner(t *testing.T) {
	w := newWorld(t)
	a := w.run("aaaa0000111122223333", "a")
	url := serveLocal(t, a.NS, "from a")
	b := w.joinOf("bbbb0000111122223333", "b", "a")
	c := w.joinOf("cccc0000111122223333", "c", "b")
	if got, want := nsIno(t, c.NS.Path), nsIno(t, a.NS.Path); got != want {
		t.Fatalf("c refers to netns %d, want a's %d", got, want)
	}
	if c.Res.IPs[0].Address.String() != a.Res.IPs[0].Address.String() {
		t.Fatalf("c's result: %v, want a's address %v", c.Res.IPs, a.Res.IPs)
	}
	b2, err := os.ReadFile(filepath.Join(w.DataDir, "attachments", w.join.Name, c.ID+"@eth0.json"))
	if err != nil || !strings.Contains(string(b2), `"joinedTo":"`+a.ID+`"`) {
		t.Fatalf("c's join entry: %s %v, want joinedTo %s", b2, err, a.ID)
	}
	if err := w.RT.Del(context.Background(), w.join, b.RC); err != nil {
		t.Fatal(err)
	}
	if out := mustIn(t, c.NS.Path, "curl", "-sS", "--max-time", "3", url); out != "from a" {
		t.Fatalf("c after b left: %q", out)
	}
}

// TestTargetDelWithJoiner is Docker's behaviour when the target stops while
// a joiner runs: the target's DEL removes its interfaces as always, the
// joiner keeps the (now interface-less) namespace, even after the target's
// namespace path is gone, and its DEL still works and gives the runtime its
// own namespace back.
func TestTargetDelWithJoiner(t *testing.T) {
	w := newWorld(t)
	// The target's namespace is removed by hand below, as a runtime does
	// after DEL, so it is made here rather than by w.Run.
	tns := nstest.NewNS(t, "tgt")
	rc := nstest.Attachment("tgt0123456789", tns, "eth0")
	named("target")(rc)
	t.Cleanup(func() {
		if err := w.RT.Del(context.Background(), w.bridge, rc); err != nil {
			t.Errorf("cleanup DEL: %v", err)
		}
	})
	if _, err := w.RT.Add(context.Background(), w.bridge, rc); err != nil {
		t.Fatal(err)
	}
	j := w.joinOf("jjj0123456789", "joiner", "target")
	mustIn(t, j.NS.Path, "ip", "link", "show", "eth0")

	if err := w.RT.Check(context.Background(), w.join, j.RC); err != nil {
		t.Fatalf("CHECK before the target's DEL: %v", err)
	}
	if err := w.RT.Del(context.Background(), w.bridge, rc); err != nil {
		t.Fatalf("target's DEL with a joiner present: %v", err)
	}
	if err := w.RT.Check(context.Background(), w.join, j.RC); err == nil || !strings.Contains(err.Error(), "no longer attached") {
		t.Fatalf("CHECK after the target's DEL: got %v, want an error saying it is no longer attached", err)
	}
	if out, err := in(j.NS.Path, "ip", "link", "show", "eth0"); err == nil {
		t.Fatalf("target's eth0 still there after its DEL: %s", out)
	}
	// ip netns del of the target: the joiner's mount keeps the namespace.
	ino := nsIno(t, tns.Path)
	if out, err := sh("ip", "netns", "del", tns.Name); err != nil {
		t.Fatalf("ip netns del target: %v %s", err, out)
	}
	if got := nsIno(t, j.NS.Path); got != ino {
		t.Fatalf("joiner's path: netns %d, want the target's %d kept", got, ino)
	}
	mustIn(t, j.NS.Path, "ip", "link", "show", "lo")
	// A new joiner of the target is refused: it is no longer attached.
	other := nstest.NewNS(t, "late")
	late := nstest.Attachment("late0123456789", other, "eth0")
	joining("target")(late)
	if e := w.addErr(w.join, late); e.Code != 3 || !strings.Contains(e.Msg, `"target"`) {
		t.Fatalf("joining a target that is gone: got %d %q, want code 3 naming it", e.Code, e.Msg)
	}

	if err := w.RT.Del(context.Background(), w.join, j.RC); err != nil {
		t.Fatalf("joiner's DEL after the target's: %v", err)
	}
	if got := nsIno(t, j.NS.Path); got == ino {
		t.Fatal("joiner's path still refers to the target's namespace after its DEL")
	}
	if got := w.joins(); len(got) != 0 {
		t.Fatalf("joins left: %v", got)
	}
	// tns was deleted by hand: recreate the name so nstest's cleanup,
	// which deletes it again, succeeds.
	if out, err := sh("ip", "netns", "add", tns.Name); err != nil {
		t.Fatalf("%v %s", err, out)
	}
}

// TestConcurrentJoins: 16 containers join one target at once, all see its
// server, and all leave at once; the target is untouched.
func TestConcurrentJoins(t *testing.T) {
	const n = 16
	w := newWorld(t)
	web := w.run("conc0123456789", "web")
	url := serveLocal(t, web.NS, "ok")
	nss := make([]*nstest.NS, n)
	rcs := make([]*libcni.RuntimeConf, n)
	for i := range nss {
		nss[i] = nstest.NewNS(t, "j")
		rcs[i] = nstest.Attachment(fmt.Sprintf("joiner%02d", i), nss[i], "eth0")
		joining("web")(rcs[i])
		rc := rcs[i]
		t.Cleanup(func() { _ = w.RT.Del(context.Background(), w.join, rc) })
	}
	parallel := func(op func(i int) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range rcs {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = op(i) }()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("joiner %d: %v", i, err)
			}
		}
	}
	want := nsIno(t, web.NS.Path)
	parallel(func(i int) error {
		_, err := w.RT.Add(context.Background(), w.join, rcs[i])
		return err
	})
	for i, c := range nss {
		if nsIno(t, c.Path) != want {
			t.Fatalf("joiner %d does not refer to web's namespace", i)
		}
	}
	if got := len(w.joins()); got != n {
		t.Fatalf("%d joins recorded, want %d", got, n)
	}
	parallel(func(i int) error {
		if out, err := in(nss[i].Path, "curl", "-sS", "--max-time", "3", url); err != nil || out != "ok" {
			return fmt.Errorf("curl: %q %v", out, err)
		}
		return nil
	})
	parallel(func(i int) error { return w.RT.Del(context.Background(), w.join, rcs[i]) })
	for i, c := range nss {
		if nsIno(t, c.Path) == want {
			t.Fatalf("joiner %d still refers to web's namespace after DEL", i)
		}
	}
	if got := w.joins(); len(got) != 0 {
		t.Fatalf("joins left: %v", got)
	}
	nstest.Ping(t, w.Host, web.IP(t, "4"))
}

// TestGCAndCheck: CHECK notices a join undone behind the plugin's back; GC
// drops joins that are not valid and keeps those that are.
func TestGCAndCheck(t *testing.T) {
	w := newWorld(t)
	web := w.run("gc0123456789", "web")
	keep := w.joinOf("keep0123456789", "keep", "web")
	stale := w.joinOf("stale0123456789", "stale", "web")
	if err := w.RT.GC(context.Background(), w.join, keep.RC); err != nil {
		t.Fatal(err)
	}
	if nsIno(t, stale.NS.Path) == nsIno(t, web.NS.Path) {
		t.Fatal("GC left the stale join mounted")
	}
	if nsIno(t, keep.NS.Path) != nsIno(t, web.NS.Path) {
		t.Fatal("GC undid a valid join")
	}
	if got := w.joins(); !slices.Equal(got, []string{keep.ID + "@eth0.json"}) {
		t.Fatalf("joins after GC: %v", got)
	}
	if err := w.RT.Check(context.Background(), w.join, keep.RC); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if out, err := sh("umount", keep.NS.Path); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := w.RT.Check(context.Background(), w.join, keep.RC); err == nil || !strings.Contains(err.Error(), "no longer refers") {
		t.Fatalf("CHECK after the mount went: got %v, want an error saying so", err)
	}

	// The bridge's GC keeps valid attachment entries and drops the others.
	entry := filepath.Join(w.DataDir, "attachments", w.bridge.Name, web.ID+"@eth0.json")
	if err := w.RT.GC(context.Background(), w.bridge, web.RC); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(entry); err != nil {
		t.Fatalf("bridge GC dropped a valid entry: %v", err)
	}
	if err := w.RT.GC(context.Background(), w.bridge); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(entry); !os.IsNotExist(err) {
		t.Fatalf("bridge GC with no valid attachment kept web's entry: %v", err)
	}
}

// TestNetnsDelAfterJoin: the bind mount over a /run/netns file must not
// break the runtime's removal of that namespace (ip netns del, which
// nstest's cleanup and every runtime does): after DEL it works as for any
// namespace; before DEL (a runtime that skips it) the first ip netns del
// only detaches the join, and DEL then still succeeds and a second ip
// netns del removes the file.
func TestNetnsDelAfterJoin(t *testing.T) {
	w := newWorld(t)
	w.run("del0123456789", "web")
	for _, delFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("DEL first %v", delFirst), func(t *testing.T) {
			name := nstest.UniqueName("jd")
			if out, err := sh("ip", "netns", "add", name); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			path := "/run/netns/" + name
			t.Cleanup(func() {
				if _, err := os.Stat(path); err == nil {
					_, _ = sh("umount", path)
					_, _ = sh("ip", "netns", "del", name)
				}
			})
			rc := &libcni.RuntimeConf{ContainerID: "jd-" + name, NetNS: path, IfName: "eth0"}
			joining("web")(rc)
			if _, err := w.RT.Add(context.Background(), w.join, rc); err != nil {
				t.Fatal(err)
			}
			if delFirst {
				if err := w.RT.Del(context.Background(), w.join, rc); err != nil {
					t.Fatal(err)
				}
				if out, err := sh("ip", "netns", "del", name); err != nil {
					t.Fatalf("ip netns del after DEL: %v %s", err, out)
				}
			} else {
				out, err := sh("ip", "netns", "del", name)
				t.Logf("ip netns del with the join mounted: %v %s", err, out)
				if err := w.RT.Del(context.Background(), w.join, rc); err != nil {
					t.Fatalf("DEL after ip netns del: %v", err)
				}
				if _, err := os.Stat(path); err == nil {
					if out, err := sh("ip", "netns", "del", name); err != nil {
						t.Fatalf("second ip netns del: %v %s", err, out)
					}
				}
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("%s still there: %v", path, err)
			}
			if got := w.joins(); len(got) != 0 {
				t.Fatalf("joins left: %v", got)
			}
		})
	}
}

// TestJoinDNS: a joiner of a container on a Podman network with dnsname
// gets its DNS (the network's name server and search domain) in the
// result, and that server answers it by name.
func TestJoinDNS(t *testing.T) {
	w := newWorld(t)
	// Other names go to a closed port on the host's loopback, never to the
	// machine's resolver.
	podman := w.Conflist(nstest.Example(t, "podman-network.conflist"), func(m map[string]any) {
		for _, p := range m["plugins"].([]any) {
			if pm := p.(map[string]any); pm["type"] == "dnsname" {
				pm["upstreams"] = []string{"127.0.0.1:5353"}
			}
		}
	})
	web := w.Run(podman, "dns0123456789", named("web"))
	j := w.joinOf("dnsj0123456789", "j", "web")
	if !slices.Contains(j.Res.DNS.Nameservers, "10.89.0.1") || !slices.Contains(j.Res.DNS.Search, "dns.podman") {
		t.Fatalf("joiner's DNS: got %+v, want web's %+v", j.Res.DNS, web.Res.DNS)
	}
	out := mustIn(t, j.NS.Path, "dig", "+short", "+time=2", "+tries=1", "@10.89.0.1", "web.dns.podman")
	if strings.TrimSpace(out) != web.IP(t, "4") {
		t.Fatalf("dig web.dns.podman from the joiner: got %q, want %s", out, web.IP(t, "4"))
	}
}

// TestVersions: every CNI version a runtime may speak gets the target's
// address in its own result format; STATUS is ready.
func TestVersions(t *testing.T) {
	w := newWorld(t)
	web := w.run("ver0123456789", "web")
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			list := w.Conflist(nstest.Example(t, "docker-container-mode.conflist"), nstest.SetVersion(v))
			c := nstest.NewNS(t, "v")
			rc := nstest.Attachment("v"+strings.ReplaceAll(v, ".", ""), c, "eth0")
			joining("web")(rc)
			res, err := w.RT.Add(context.Background(), list, rc)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.IPs) != 1 || res.IPs[0].Address.String() != web.Res.IPs[0].Address.String() {
				t.Fatalf("result: %v, want web's %v", res.IPs, web.Res.IPs)
			}
			if err := w.RT.Del(context.Background(), list, rc); err != nil {
				t.Fatal(err)
			}
			if v == "1.1.0" {
				if err := w.RT.Status(context.Background(), list); err != nil {
					t.Fatalf("STATUS: %v", err)
				}
			}
		})
	}
}

// TestJoinSeesKernel: a target on two networks (docker network connect)
// gives its joiner both interfaces; what the result reports is checked
// against the kernel: a MAC changed after the attachment is reported as
// it is now, an address removed by hand is not reported.
func TestJoinSeesKernel(t *testing.T) {
	w := newWorld(t)
	web := w.run("multi0123456789", "web")
	other := w.Conflist(nstest.Example(t, "docker-network.conflist"), func(m map[string]any) { m["name"] = "backend" })
	_, res1 := w.Attach(other, web, "eth1")
	web.NS.MustExec(t, "ip", "link", "set", "eth0", "address", "02:00:00:00:be:ef")
	web.NS.MustExec(t, "ip", "addr", "del", res1.IPs[0].Address.String(), "dev", "eth1")

	j := w.joinOf("mj0123456789", "j", "web")
	var names, macs []string
	for _, itf := range j.Res.Interfaces {
		names, macs = append(names, itf.Name), append(macs, itf.Mac)
	}
	if !slices.Equal(names, []string{"eth0", "eth1"}) || macs[0] != "02:00:00:00:be:ef" {
		t.Fatalf("interfaces: got %v %v, want eth0 (02:00:00:00:be:ef) and eth1", names, macs)
	}
	if len(j.Res.IPs) != 1 || j.Res.IPs[0].Address.String() != web.Res.IPs[0].Address.String() || *j.Res.IPs[0].Interface != 0 {
		t.Fatalf("IPs: got %v, want only eth0's %s (eth1's was removed)", j.Res.IPs, web.Res.IPs[0].Address.String())
	}
	mustIn(t, j.NS.Path, "ip", "link", "show", "eth1")
}
