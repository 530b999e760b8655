package dnsname_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/miekg/dns"
)

// TestResolve: names, FQDNs, aliases, shared aliases, PTR, AAAA, another
// network's names hidden, NXDOMAIN, forwarding to the (fake) upstream, over
// UDP and TCP, all asked from inside container namespaces.
func TestResolve(t *testing.T) {
	e := newEnv(t)
	appnet := e.network("appnet", 1)
	other := e.network("othernet", 2)
	web := e.attach(appnet, "web", "svc", "api")
	db := e.attach(appnet, "db", "svc")
	far := e.attach(other, "far")

	if got := web.res.DNS; !slices.Contains(got.Nameservers, "10.89.1.1") || !slices.Contains(got.Search, "dns.podman") {
		t.Fatalf("result dns: got %+v, want nameserver 10.89.1.1 and search dns.podman", got)
	}
	webIP, dbIP, webIP6 := web.ip(t, "4"), db.ip(t, "4"), web.ip(t, "6")
	ptr, _ := dns.ReverseAddr(dbIP)
	ptr6, _ := dns.ReverseAddr(webIP6)
	tests := []struct {
		from  *container
		proto string
		name  string
		qtype uint16
		want  string
	}{
		{web, "udp", "db", dns.TypeA, "NOERROR " + dbIP},
		{web, "udp", "db.dns.podman", dns.TypeA, "NOERROR " + dbIP},
		{web, "udp", "DB.Dns.PODMAN", dns.TypeA, "NOERROR " + dbIP},
		{db, "udp", "web", dns.TypeA, "NOERROR " + webIP},
		{db, "udp", "api.dns.podman", dns.TypeA, "NOERROR " + webIP},
		{db, "udp", web.id[:12], dns.TypeA, "NOERROR " + webIP},
		{db, "udp", "web", dns.TypeAAAA, "NOERROR " + webIP6},
		{far, "udp", "svc", dns.TypeA, "NXDOMAIN"},
		{web, "udp", "svc", dns.TypeA, "NOERROR " + strings.Join(sorted(webIP, dbIP), ",")},
		{web, "tcp", "svc.dns.podman", dns.TypeA, "NOERROR " + strings.Join(sorted(webIP, dbIP), ",")},
		{web, "udp", ptr, dns.TypePTR, "NOERROR db.dns.podman."},
		{db, "udp", ptr6, dns.TypePTR, "NOERROR web.dns.podman."},
		{web, "udp", "far", dns.TypeA, "NXDOMAIN"},
		{web, "udp", "far.dns.podman", dns.TypeA, "NXDOMAIN"},
		{far, "udp", "far", dns.TypeA, "NOERROR " + far.ip(t, "4")},
		{far, "udp", "web", dns.TypeA, "NXDOMAIN"},
		{web, "udp", "nobody.dns.podman", dns.TypeA, "NXDOMAIN"},
		{web, "udp", "www.example.test", dns.TypeA, "NOERROR " + forwardedIP},
		{web, "tcp", "www.example.test", dns.TypeA, "NOERROR " + forwardedIP},
		{far, "udp", "www.example.test", dns.TypeA, "NOERROR " + forwardedIP},
		{web, "udp", "www.example.org", dns.TypeA, "NXDOMAIN"},
	}
	for _, tt := range tests {
		got := tt.from.lookup(t, tt.proto, tt.name, tt.qtype)
		if got != tt.want {
			t.Errorf("%s asks %s %s over %s: got %q, want %q", tt.from.name, tt.name, dns.TypeToString[tt.qtype], tt.proto, got, tt.want)
		}
	}
	// CHECK verifies the entry and asks the server.
	for _, c := range []*container{web, db} {
		if err := e.RT.Check(context.Background(), appnet, c.rc); err != nil {
			t.Fatalf("CHECK %s: %v", c.name, err)
		}
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

// TestVisibility: a name resolves the moment ADD returns and is gone the
// moment DEL returns; DEL is idempotent; with the last name gone the
// sidecar exits and nothing answers any more.
func TestVisibility(t *testing.T) {
	e := newEnv(t)
	list := e.network("appnet", 1)
	a := e.attach(list, "alpha")
	if got := a.lookup(t, "udp", "alpha", dns.TypeA); got != "NOERROR "+a.ip(t, "4") {
		t.Fatalf("alpha right after ADD: got %q", got)
	}
	pid := e.sidecarPID()
	if pid == 0 {
		t.Fatal("no sidecar pid file after ADD")
	}
	b := e.attach(list, "beta")
	if got := a.lookup(t, "udp", "beta", dns.TypeA); got != "NOERROR "+b.ip(t, "4") {
		t.Fatalf("beta right after ADD: got %q", got)
	}
	e.del(list, b)
	if got := a.lookup(t, "udp", "beta", dns.TypeA); got != "NXDOMAIN" {
		t.Fatalf("beta right after DEL: got %q, want NXDOMAIN", got)
	}
	e.del(list, b) // twice
	// DEL without ADD, and without a netns.
	ghost := &libcni.RuntimeConf{ContainerID: "never-added", NetNS: "", IfName: "eth0"}
	if err := e.RT.Del(context.Background(), list, ghost); err != nil {
		t.Fatalf("DEL without ADD: %v", err)
	}
	if got := e.sidecarPID(); got != pid {
		t.Fatalf("sidecar pid changed from %d to %d while names remained", pid, got)
	}
	fd := pidfd(t, pid)
	e.del(list, a)
	if err := waitExit(fd, 5*time.Second); err != nil {
		t.Fatalf("sidecar %d after the last DEL: %v", pid, err)
	}
	if _, err := e.Host.Exec("nc", "-z", "-w", "1", "10.89.1.1", "53"); err == nil {
		t.Fatal("something still listens on 10.89.1.1:53 after the last DEL")
	}
}

// TestCrashRecovery: a sidecar killed with SIGKILL is restarted by the
// next ADD with every existing name served again.
func TestCrashRecovery(t *testing.T) {
	e := newEnv(t)
	list := e.network("appnet", 1)
	other := e.network("othernet", 2)
	a := e.attach(list, "alpha", "shared")
	b := e.attach(list, "beta", "shared")
	o := e.attach(other, "omega")
	pid := e.sidecarPID()
	fd := pidfd(t, pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(fd, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ask(t, "udp", "beta", dns.TypeA); err == nil {
		t.Fatal("query answered with the sidecar killed")
	}
	c := e.attach(list, "gamma")
	if np := e.sidecarPID(); np == pid || np == 0 {
		t.Fatalf("sidecar pid after restart: got %d, want a new one (old %d)", np, pid)
	}
	for _, tc := range []struct {
		from *container
		name string
		want string
	}{
		{c, "alpha", "NOERROR " + a.ip(t, "4")},
		{a, "beta.dns.podman", "NOERROR " + b.ip(t, "4")},
		{a, "gamma", "NOERROR " + c.ip(t, "4")},
		{c, "shared", "NOERROR " + strings.Join(sorted(a.ip(t, "4"), b.ip(t, "4")), ",")},
		{o, "omega", "NOERROR " + o.ip(t, "4")},
		{o, "alpha", "NXDOMAIN"},
	} {
		if got := tc.from.lookup(t, "udp", tc.name, dns.TypeA); got != tc.want {
			t.Errorf("after restart, %s asks %s: got %q, want %q", tc.from.name, tc.name, got, tc.want)
		}
	}
}

// TestConcurrentAdds: 100 ADDs at once, all resolvable when they return.
func TestConcurrentAdds(t *testing.T) {
	e := newEnv(t)
	list := e.network("appnet", 1, func(m map[string]any) {
		// /24 holds 253 containers; keep the IPv4 range only for speed.
		ipam := m["plugins"].([]any)[0].(map[string]any)["ipam"].(map[string]any)
		ipam["ranges"] = ipam["ranges"].([]any)[:1]
	})
	const n = 100
	cs := make([]*container, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs[i], errs[i] = e.tryAttach(list, fmt.Sprintf("c%03d", i), "all")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ADD c%03d: %v", i, err)
		}
	}
	var all []string
	for i, c := range cs {
		want := "NOERROR " + c.ip(t, "4")
		if got := cs[(i+1)%n].lookup(t, "udp", c.name, dns.TypeA); got != want {
			t.Errorf("%s: got %q, want %q", c.name, got, want)
		}
		all = append(all, c.ip(t, "4"))
	}
	slices.Sort(all)
	if got := cs[0].lookup(t, "tcp", "all", dns.TypeA); got != "NOERROR "+strings.Join(all, ",") {
		t.Fatalf("shared alias of %d containers over TCP: got %q, want all %d addresses", n, got, n)
	}
}

// TestGC drops the entries not in valid-attachments.
func TestGC(t *testing.T) {
	e := newEnv(t)
	list := e.network("appnet", 1)
	keep := e.attach(list, "keep")
	e.attach(list, "drop")
	if err := e.RT.GC(context.Background(), list, keep.rc); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := keep.lookup(t, "udp", "drop", dns.TypeA); got != "NXDOMAIN" {
		t.Fatalf("dropped name after GC: got %q, want NXDOMAIN", got)
	}
	// GC ran the whole chain: bridge collected drop's interface, so ask
	// from keep.
	if got := keep.lookup(t, "udp", "keep", dns.TypeA); got != "NOERROR "+keep.ip(t, "4") {
		t.Fatalf("kept name after GC: got %q", got)
	}
	files, _ := filepath.Glob(filepath.Join(e.sidecarDir(), "registry", "appnet", "*.json"))
	if len(files) != 1 || !strings.Contains(files[0], keep.id) {
		t.Fatalf("registry after GC: got %v, want only %s's entry", files, keep.id)
	}
}

// TestInternal: an internal network resolves its own names and refuses
// everything else.
func TestInternal(t *testing.T) {
	e := newEnv(t)
	list := e.network("secret", 3, func(m map[string]any) {
		m["plugins"].([]any)[1].(map[string]any)["internal"] = true
	})
	a := e.attach(list, "vault")
	if got := a.lookup(t, "udp", "vault", dns.TypeA); got != "NOERROR "+a.ip(t, "4") {
		t.Fatalf("own name on internal network: got %q", got)
	}
	if got := a.lookup(t, "udp", "www.example.test", dns.TypeA); got != "REFUSED" {
		t.Fatalf("forwarding on internal network: got %q, want REFUSED", got)
	}
}

// TestVersions runs ADD, CHECK and DEL under every supported cniVersion.
func TestVersions(t *testing.T) {
	e := newEnv(t)
	for i, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		list := e.network("v"+strings.ReplaceAll(v, ".", ""), 10+i, func(m map[string]any) { m["cniVersion"] = v })
		c := e.attach(list, "x"+strings.ReplaceAll(v, ".", ""))
		if got := c.lookup(t, "udp", c.name, dns.TypeA); got != "NOERROR "+c.ip(t, "4") {
			t.Errorf("cniVersion %s: got %q", v, got)
		}
		if v != "0.3.0" && v != "0.3.1" {
			if err := e.RT.Check(context.Background(), list, c.rc); err != nil {
				t.Errorf("CHECK under %s: %v", v, err)
			}
		}
		e.del(list, c)
	}
}

// TestBadInput: errors carry the right code and name the field and value;
// a failed ADD leaves no name behind.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		patch func(map[string]any)
		alias string
		code  uint
		msg   string
	}{
		{"domain", dnsField("domainName", "bad domain"), "", 7, `domainName "bad domain"`},
		{"upstream", dnsField("upstreams", []any{"not-an-ip"}), "", 7, `upstreams[0] "not-an-ip"`},
		{"backend", dnsField("registry", map[string]any{"backend": "zk"}), "", 7, `registry.backend "zk"`},
		{"dockerCompat", dnsField("dockerCompat", true), "", 2, "dockerCompat"},
		{"alias", nil, "bad alias!", 7, `"bad alias!"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var patches []func(map[string]any)
			if tt.patch != nil {
				patches = append(patches, tt.patch)
			}
			list := e.network(fmt.Sprintf("bad%d", i), 20+i, patches...)
			var aliases []string
			if tt.alias != "" {
				aliases = []string{tt.alias}
			}
			_, err := e.tryAttach(list, "victim", aliases...)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want an error containing %q", err, tt.msg)
			}
			var ce *types.Error
			if !errors.As(err, &ce) || ce.Code != tt.code {
				t.Fatalf("got %#v, want a CNI error with code %d", err, tt.code)
			}
		})
	}
	// Nothing registered by the failed ADDs.
	if _, err := e.Host.Exec("nc", "-z", "-w", "1", "10.89.20.1", "53"); err == nil {
		t.Fatal("a DNS server listens after only failed ADDs")
	}
}

func dnsField(k string, v any) func(map[string]any) {
	return func(m map[string]any) { m["plugins"].([]any)[1].(map[string]any)[k] = v }
}

// TestSidecarLingers: after the last DEL nothing answers at once, but the
// sidecar process stays for a moment, so a container right after (podman
// run --rm, one after another) finds it running instead of starting it
// again; with no new name it exits within a second or so.
func TestSidecarLingers(t *testing.T) {
	e := newEnv(t)
	list := e.network("appnet", 1)
	a := e.attach(list, "alpha")
	pid := e.sidecarPID()
	fd := pidfd(t, pid)
	e.del(list, a)
	if _, err := e.Host.Exec("nc", "-z", "-w", "1", "10.89.1.1", "53"); err == nil {
		t.Fatal("something still listens on 10.89.1.1:53 right after the last DEL")
	}
	b := e.attach(list, "beta")
	if got := e.sidecarPID(); got != pid {
		t.Errorf("sidecar pid %d after a container right after the last DEL, want the lingering %d", got, pid)
	}
	if got := b.lookup(t, "udp", "beta", dns.TypeA); got != "NOERROR "+b.ip(t, "4") {
		t.Fatalf("beta on the lingering sidecar: got %q", got)
	}
	if got := b.lookup(t, "udp", "alpha", dns.TypeA); got != "NXDOMAIN" {
		t.Fatalf("alpha after its DEL: got %q", got)
	}
	e.del(list, b)
	if err := waitExit(fd, 3*time.Second); err != nil {
		t.Fatalf("sidecar %d 3 s after the last DEL: %v", pid, err)
	}
}
