package bridge_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthnet/berth/internal/nstest"
)

// env is one test's world: a private host namespace, a libcni runtime whose
// plugins run there, and a state directory.
type env struct {
	t       testing.TB
	host    *nstest.NS
	rt      *nstest.Runtime
	dataDir string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	nstest.RequireRoot(t)
	host := nstest.NewNS(t, "host")
	return &env{t: t, host: host, rt: nstest.NewRuntime(t, host), dataDir: t.TempDir()}
}

// conflist loads a conf-examples file (or raw JSON) with state under the
// env's dataDir, applying extra patches.
func (e *env) conflist(raw []byte, patches ...func(map[string]any)) *libcni.NetworkConfigList {
	e.t.Helper()
	return nstest.Conflist(e.t, raw, append([]func(map[string]any){nstest.DataDir(e.dataDir)}, patches...)...)
}

func example(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "conf-examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// container is a namespace attached to a network.
type container struct {
	ns  *nstest.NS
	rc  *libcni.RuntimeConf
	res *current.Result
}

// add creates a container namespace and runs ADD; DEL runs on cleanup
// (after the test's own DELs, which makes it a second DEL: idempotence is
// exercised on every test).
func (e *env) add(list *libcni.NetworkConfigList, id string) *container {
	e.t.Helper()
	c := &container{ns: nstest.NewNS(e.t, "ctr")}
	c.rc = nstest.Attachment(id, c.ns, "eth0")
	e.t.Cleanup(func() {
		if err := e.rt.Del(context.Background(), list, c.rc); err != nil {
			e.t.Errorf("cleanup DEL %s: %v", id, err)
		}
	})
	res, err := e.rt.Add(context.Background(), list, c.rc)
	if err != nil {
		e.t.Fatalf("ADD %s: %v", id, err)
	}
	c.res = res
	return c
}

// ip returns the container's first address of the family ("4" or "6").
func (c *container) ip(t testing.TB, fam string) string {
	t.Helper()
	for _, ipc := range c.res.IPs {
		if (ipc.Address.IP.To4() != nil) == (fam == "4") {
			return ipc.Address.IP.String()
		}
	}
	t.Fatalf("no IPv%s address in result %v", fam, c.res)
	return ""
}

func ping(t testing.TB, from *nstest.NS, addr string) {
	t.Helper()
	if out, err := from.Exec("ping", "-c", "1", "-W", "2", addr); err != nil {
		t.Fatalf("ping %s from %s failed: %v\n%s", addr, from.Name, err, out)
	}
}

// ipamFiles lists host-local's reservation files for network.
func (e *env) ipamFiles(network string) []string {
	e.t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.dataDir, "networks", network))
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		n := en.Name()
		if n == "lock" || strings.HasPrefix(n, "last_reserved_ip") || strings.HasPrefix(n, ".") {
			continue
		}
		out = append(out, n)
	}
	return out
}

// links lists the link names in ns.
func links(t testing.TB, ns *nstest.NS) string {
	t.Helper()
	return ns.MustExec(t, "ip", "-o", "link", "show")
}

func setField(plugin int, key string, value any) func(map[string]any) {
	return func(m map[string]any) {
		m["plugins"].([]any)[plugin].(map[string]any)[key] = value
	}
}

func setVersion(v string) func(map[string]any) {
	return func(m map[string]any) { m["cniVersion"] = v }
}
