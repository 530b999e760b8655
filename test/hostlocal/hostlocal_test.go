package hostlocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/cni"
)

// env is one test's private host namespace, container namespace, libcni
// runtime and data directory.
type env struct {
	*nstest.Env
	ctr *nstest.NS
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return &env{Env: nstest.NewEnv(t), ctr: nstest.NewNS(t, "ctr")}
}

// list is a one-plugin conflist running host-local with the given ipam
// object (its dataDir pointed into the test's directory).
func (e *env) list(ver, name, ipam string) *libcni.NetworkConfigList {
	e.T.Helper()
	raw := fmt.Sprintf(`{"cniVersion":%q,"name":%q,"plugins":[{"type":"host-local","capabilities":{"ips":true},"ipam":%s}]}`, ver, name, ipam)
	return nstest.Conflist(e.T, []byte(raw), nstest.DataDir(e.DataDir))
}

func (e *env) netDir(name string) string { return filepath.Join(e.DataDir, "networks", name) }

func (e *env) att(id string) *libcni.RuntimeConf { return nstest.Attachment(id, e.ctr, "eth0") }

func (e *env) add(l *libcni.NetworkConfigList, rc *libcni.RuntimeConf) (*current.Result, error) {
	return e.RT.Add(context.Background(), l, rc)
}

func (e *env) mustAdd(l *libcni.NetworkConfigList, rc *libcni.RuntimeConf) *current.Result {
	e.T.Helper()
	res, err := e.add(l, rc)
	if err != nil {
		e.T.Fatalf("ADD %s: %v", rc.ContainerID, err)
	}
	return res
}

func (e *env) mustDel(l *libcni.NetworkConfigList, rc *libcni.RuntimeConf) {
	e.T.Helper()
	if err := e.RT.Del(context.Background(), l, rc); err != nil {
		e.T.Fatalf("DEL %s: %v", rc.ContainerID, err)
	}
}

// reservations lists the network's reservation files as "ip=content".
func (e *env) reservations(name string) string {
	e.T.Helper()
	ents, err := os.ReadDir(e.netDir(name))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		e.T.Fatal(err)
	}
	var out []string
	for _, ent := range ents {
		if ent.Name() == "lock" || strings.HasPrefix(ent.Name(), "last_reserved_ip.") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(e.netDir(name), ent.Name()))
		if err != nil {
			e.T.Fatal(err)
		}
		out = append(out, ent.Name()+"="+strings.ReplaceAll(string(b), "\r\n", `\r\n`))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func ips(res *current.Result) string {
	var out []string
	for _, ip := range res.IPs {
		s := ip.Address.String()
		if ip.Gateway != nil {
			s += " gw " + ip.Gateway.String()
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

func cniErr(t testing.TB, err error) *types.Error {
	t.Helper()
	var ce *types.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a CNI error", err)
	}
	return ce
}

func TestAddCheckDel(t *testing.T) {
	tests := []struct {
		name, ipam string
		want       string
		files      string
	}{
		{"v4", `{"type":"host-local","subnet":"10.1.0.0/24","routes":[{"dst":"0.0.0.0/0"}]}`,
			"10.1.0.2/24 gw 10.1.0.1", `10.1.0.2=c1\r\neth0`},
		{"v6", `{"type":"host-local","ranges":[[{"subnet":"fd00:1::/64"}]]}`,
			"fd00:1::2/64 gw fd00:1::1", `fd00:1::2=c1\r\neth0`},
		{"dual stack", `{"type":"host-local","ranges":[[{"subnet":"10.2.0.0/24","gateway":"10.2.0.254"}],[{"subnet":"fd00:2::/120"}]]}`,
			"10.2.0.1/24 gw 10.2.0.254, fd00:2::2/120 gw fd00:2::1", `10.2.0.1=c1\r\neth0 fd00:2::2=c1\r\neth0`},
		{"/32 without gateway", `{"type":"host-local","subnet":"10.3.0.7/32"}`,
			"10.3.0.7/32", `10.3.0.7=c1\r\neth0`},
	}
	for _, ver := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		for _, tt := range tests {
			t.Run(ver+"/"+tt.name, func(t *testing.T) {
				e := newEnv(t)
				l := e.list(ver, "net1", tt.ipam)
				rc := e.att("c1")
				if got := ips(e.mustAdd(l, rc)); got != tt.want {
					t.Fatalf("ADD: got %s, want %s", got, tt.want)
				}
				// Idempotent: the same attachment gets the same addresses.
				if got := ips(e.mustAdd(l, rc)); got != tt.want {
					t.Fatalf("second ADD: got %s, want %s", got, tt.want)
				}
				if got := e.reservations("net1"); got != tt.files {
					t.Fatalf("files: got %s, want %s", got, tt.files)
				}
				if ver != "0.3.1" { // CHECK exists since 0.4.0
					if err := e.RT.Check(context.Background(), l, rc); err != nil {
						t.Fatalf("CHECK: %v", err)
					}
				}
				e.mustDel(l, rc)
				e.mustDel(l, rc)
				if got := e.reservations("net1"); got != "" {
					t.Fatalf("files after DEL: got %s, want none", got)
				}
			})
		}
	}
}

func TestCheckFailsWithoutReservation(t *testing.T) {
	e := newEnv(t)
	l := e.list("1.0.0", "net1", `{"type":"host-local","subnet":"10.1.0.0/24"}`)
	rc := e.att("c1")
	e.mustAdd(l, rc)
	// The reservation disappears behind the runtime's back.
	if err := os.Remove(filepath.Join(e.netDir("net1"), "10.1.0.2")); err != nil {
		t.Fatal(err)
	}
	err := e.RT.Check(context.Background(), l, rc)
	if ce := cniErr(t, err); ce.Code != cni.CodeUnknownContainer || !strings.Contains(ce.Msg, "10.1.0.2 is not reserved for c1/eth0") {
		t.Fatalf("got %d %q, want code 3 naming the address", ce.Code, ce.Msg)
	}
}

func TestRequestedIPs(t *testing.T) {
	ipam := `{"type":"host-local","ranges":[[{"subnet":"10.5.0.0/24"}],[{"subnet":"fd00:5::/64"}]]}`
	tests := []struct {
		name string
		conf func(*env) (*libcni.NetworkConfigList, *libcni.RuntimeConf)
		want string
	}{
		{"CNI_ARGS IP=a,b", func(e *env) (*libcni.NetworkConfigList, *libcni.RuntimeConf) {
			rc := e.att("c1")
			rc.Args = [][2]string{{"IgnoreUnknown", "1"}, {"IP", "10.5.0.50,fd00:5::50"}}
			return e.list("1.0.0", "net1", ipam), rc
		}, "10.5.0.50/24 gw 10.5.0.1, fd00:5::50/64 gw fd00:5::1"},
		{"args.cni.ips", func(e *env) (*libcni.NetworkConfigList, *libcni.RuntimeConf) {
			raw := `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"host-local","args":{"cni":{"ips":["10.5.0.60"]}},"ipam":` + ipam + `}]}`
			return nstest.Conflist(e.T, []byte(raw), nstest.DataDir(e.DataDir)), e.att("c1")
		}, "10.5.0.60/24 gw 10.5.0.1, fd00:5::2/64 gw fd00:5::1"},
		{"runtimeConfig.ips", func(e *env) (*libcni.NetworkConfigList, *libcni.RuntimeConf) {
			rc := e.att("c1")
			rc.CapabilityArgs = map[string]any{"ips": []string{"fd00:5::70/64"}}
			return e.list("1.1.0", "net1", ipam), rc
		}, "10.5.0.2/24 gw 10.5.0.1, fd00:5::70/64 gw fd00:5::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			l, rc := tt.conf(e)
			if got := ips(e.mustAdd(l, rc)); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			// The same address for another container is a conflict (101),
			// and the failed ADD leaves its other range set untouched.
			before := e.reservations("net1")
			rc2 := *rc
			rc2.ContainerID = "c2"
			_, err := e.add(l, &rc2)
			if ce := cniErr(t, err); ce.Code != cni.CodeConflict || !strings.Contains(ce.Msg, "address already in use") {
				t.Fatalf("got %d %q, want code 101 'address already in use'", ce.Code, ce.Msg)
			}
			if got := e.reservations("net1"); got != before {
				t.Fatalf("files after failed ADD: got %s, want %s", got, before)
			}
		})
	}

	t.Run("outside every range", func(t *testing.T) {
		e := newEnv(t)
		rc := e.att("c1")
		rc.Args = [][2]string{{"IP", "10.9.9.9"}}
		_, err := e.add(e.list("1.0.0", "net1", ipam), rc)
		if ce := cniErr(t, err); ce.Code != cni.CodeInvalidConfig || ce.Msg != "host-local: CNI_ARGS IP[0] 10.9.9.9: not in any range" {
			t.Fatalf("got %d %q", ce.Code, ce.Msg)
		}
	})
}

func TestExhaustion(t *testing.T) {
	e := newEnv(t)
	// The big IPv6 set comes first, so the second ADD reserves an IPv6
	// address before the IPv4 set turns out full: it must be given back.
	l := e.list("1.0.0", "net1", `{"type":"host-local","ranges":[[{"subnet":"fd00:7::/64"}],[{"subnet":"10.1.0.0/30"}]]}`)
	e.mustAdd(l, e.att("c1"))
	before := e.reservations("net1")
	last := func() string {
		var out []string
		for _, n := range []string{"last_reserved_ip.0", "last_reserved_ip.1"} {
			b, err := os.ReadFile(filepath.Join(e.netDir("net1"), n))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
		return strings.Join(out, " ")
	}
	lastBefore := last()
	_, err := e.add(l, e.att("c2"))
	ce := cniErr(t, err)
	if want := "host-local: no free address in 10.1.0.0/30 (range 10.1.0.1-10.1.0.2)"; ce.Code != cni.CodeAddressExhausted || ce.Msg != want {
		t.Fatalf("got %d %q, want %d %q", ce.Code, ce.Msg, cni.CodeAddressExhausted, want)
	}
	if got := e.reservations("net1"); got != before {
		t.Fatalf("files after failed ADD: got %s, want %s", got, before)
	}
	// Not even the round-robin position moved (the reference's does).
	if got := last(); got != lastBefore {
		t.Fatalf("last_reserved_ip after failed ADD: got %s, want %s", got, lastBefore)
	}
	// The freed IPv4 address is used again.
	e.mustDel(l, e.att("c1"))
	if got := ips(e.mustAdd(l, e.att("c2"))); got != "fd00:7::3/64 gw fd00:7::1, 10.1.0.2/30 gw 10.1.0.1" {
		t.Fatalf("after DEL: got %s", got)
	}
}

func TestDelIdempotent(t *testing.T) {
	e := newEnv(t)
	for _, ipam := range []string{`{"type":"host-local","subnet":"10.1.0.0/24"}`, `{"type":"host-local","ranges":[[{"subnet":"auto"}]]}`} {
		l := e.list("1.0.0", "never-used", ipam)
		for i := 0; i < 2; i++ {
			// No prior ADD, no network directory, no netns.
			if err := e.RT.Del(context.Background(), l, &libcni.RuntimeConf{ContainerID: "ghost", IfName: "eth0"}); err != nil {
				t.Fatalf("DEL %d: %v", i, err)
			}
		}
		if _, err := os.Stat(filepath.Join(e.DataDir, "networks")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("DEL created the data directory: %v", err)
		}
	}
}

func TestGC(t *testing.T) {
	e := newEnv(t)
	l := e.list("1.1.0", "net1", `{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"fd00:8::/64"}]]}`)
	e.mustAdd(l, e.att("keep1"))
	// Attachments libcni's cache does not know (a runtime that lost its
	// state): only the plugin's GC can release them.
	other := nstest.NewRuntime(t, e.Host)
	for _, id := range []string{"stale1", "stale2"} {
		if _, err := other.Add(context.Background(), l, e.att(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Add(context.Background(), l, nstest.Attachment("keep2", e.ctr, "net0")); err != nil {
		t.Fatal(err)
	}
	if err := e.RT.GC(context.Background(), l, e.att("keep1"), nstest.Attachment("keep2", e.ctr, "net0")); err != nil {
		t.Fatalf("GC: %v", err)
	}
	want := `10.1.0.2=keep1\r\neth0 10.1.0.5=keep2\r\nnet0 fd00:8::2=keep1\r\neth0 fd00:8::5=keep2\r\nnet0`
	if got := e.reservations("net1"); got != want {
		t.Fatalf("after GC: got %s, want %s", got, want)
	}
	// The index follows: the kept attachments are still found by DEL.
	e.mustDel(l, e.att("keep1"))
	if err := other.Del(context.Background(), l, nstest.Attachment("keep2", e.ctr, "net0")); err != nil {
		t.Fatal(err)
	}
	if got := e.reservations("net1"); got != "" {
		t.Fatalf("after DEL: got %s, want none", got)
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	ok := e.list("1.1.0", "net1", `{"type":"host-local","subnet":"10.1.0.0/24"}`)
	if err := e.RT.Status(context.Background(), ok); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	// dataDir below a regular file cannot be created.
	file := filepath.Join(t.TempDir(), "afile")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	raw := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"net1","plugins":[{"type":"host-local","ipam":{"type":"host-local","subnet":"10.1.0.0/24","dataDir":%q}}]}`, filepath.Join(file, "networks"))
	bad := nstest.Conflist(t, []byte(raw))
	err := e.RT.Status(context.Background(), bad)
	if ce := cniErr(t, err); ce.Code != cni.CodePluginNotAvailable || !strings.Contains(ce.Msg, "host-local: store "+filepath.Join(file, "networks", "net1")+" is not usable") {
		t.Fatalf("got %d %q, want code 50 naming the store", ce.Code, ce.Msg)
	}
}

func TestConcurrentAdds(t *testing.T) {
	e := newEnv(t)
	l := e.list("1.0.0", "net1", `{"type":"host-local","subnet":"10.1.0.0/24"}`)
	const n = 32
	results := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.add(l, e.att(fmt.Sprintf("c%02d", i)))
			if err != nil {
				errs[i] = err
				return
			}
			results[i] = res.IPs[0].Address.IP.String()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for i, ip := range results {
		if j, dup := seen[ip]; dup {
			t.Fatalf("c%02d and c%02d both got %s", j, i, ip)
		}
		seen[ip] = i
	}
	if got := len(strings.Fields(e.reservations("net1"))); got != n {
		t.Fatalf("got %d reservation files, want %d", got, n)
	}
}

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		name, ipam string
		code       uint
		msg        string
	}{
		{"bad CIDR", `{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/33"}]]}`, 7, "host-local: ranges[0][0].subnet 10.1.0.0/33: invalid CIDR"},
		{"rangeStart outside", `{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.9.0.1"}]]}`, 7, "host-local: ranges[0][0].rangeStart 10.9.0.1: not in subnet 10.1.0.0/24"},
		{"overlapping sets", `{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/16"}],[{"subnet":"10.1.2.0/24"}]]}`, 7, "host-local: ranges[1][0].subnet 10.1.2.0/24: range set 1 overlaps range set 0 (10.1.0.0/16)"},
		{"wrong type", `{"type":"host-local","ranges":[[{"subnet":1}]]}`, 6, "host-local: ipam.ranges.subnet: cannot use JSON number as string"},
		{"nothing", `{"type":"host-local"}`, 7, "host-local: ranges: no IP ranges specified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			_, err := e.add(e.list("1.0.0", "net1", tt.ipam), e.att("c1"))
			if ce := cniErr(t, err); ce.Code != tt.code || !strings.HasPrefix(ce.Msg, tt.msg) {
				t.Fatalf("got %d %q, want %d %q", ce.Code, ce.Msg, tt.code, tt.msg)
			}
			if got := e.reservations("net1"); got != "" {
				t.Fatalf("files: got %s, want none", got)
			}
		})
	}
}

func TestResolvConfAndRoutes(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver 10.1.0.53\nsearch svc.test\noptions ndots:3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ipam := fmt.Sprintf(`{"type":"host-local","subnet":"10.1.0.0/24","resolvConf":%q,"routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.7.0/24","gw":"10.1.0.254"}]}`, path)
	res := e.mustAdd(e.list("1.0.0", "net1", ipam), e.att("c1"))
	got := fmt.Sprintf("%v %v %v", res.DNS.Nameservers, res.DNS.Search, res.DNS.Options)
	if want := "[10.1.0.53] [svc.test] [ndots:3]"; got != want {
		t.Errorf("dns: got %s, want %s", got, want)
	}
	var routes []string
	for _, r := range res.Routes {
		routes = append(routes, fmt.Sprintf("%s via %v", r.Dst.String(), r.GW))
	}
	if got, want := strings.Join(routes, ", "), "0.0.0.0/0 via <nil>, 192.168.7.0/24 via 10.1.0.254"; got != want {
		t.Errorf("routes: got %s, want %s", got, want)
	}
	// A resolvConf that cannot be read fails the ADD and reserves nothing.
	bad := strings.Replace(ipam, path, path+".missing", 1)
	_, err := e.add(e.list("1.0.0", "net2", bad), e.att("c1"))
	if ce := cniErr(t, err); ce.Code != cni.CodeInvalidConfig || !strings.HasPrefix(ce.Msg, "host-local: resolvConf "+path+".missing: open") {
		t.Fatalf("got %d %q", ce.Code, ce.Msg)
	}
	if got := e.reservations("net2"); got != "" {
		t.Fatalf("net2 files: got %s, want none", got)
	}
}
