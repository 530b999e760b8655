package nstest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// Env is one test's world: a private host namespace, a libcni runtime whose
// plugins run there, and a state directory for every plugin.
type Env struct {
	T       testing.TB
	Host    *NS
	RT      *Runtime
	DataDir string
}

// NewEnv makes the host namespace and runtime; all is removed on cleanup.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	RequireRoot(t)
	host := NewNS(t, "host")
	return &Env{T: t, Host: host, RT: NewRuntime(t, host), DataDir: t.TempDir()}
}

// Conflist parses raw with the env's state directories (see DataDir) and
// then the given patches applied.
func (e *Env) Conflist(raw []byte, patches ...func(map[string]any)) *libcni.NetworkConfigList {
	e.T.Helper()
	return Conflist(e.T, raw, append([]func(map[string]any){DataDir(e.DataDir)}, patches...)...)
}

// Example reads conf-examples/<name> from the module.
func Example(t testing.TB, name string) []byte {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "conf-examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Container is a namespace with its attachments' results by network name.
type Container struct {
	NS  *NS
	ID  string
	RC  *libcni.RuntimeConf // the first attachment
	Res *current.Result     // its result
}

// Run makes a container namespace and attaches it to list as eth0 (ADD);
// DEL runs on cleanup, after the test's own DELs, so every test also
// exercises a second DEL.
func (e *Env) Run(list *libcni.NetworkConfigList, id string, opts ...func(*libcni.RuntimeConf)) *Container {
	e.T.Helper()
	c := &Container{NS: NewNS(e.T, "ctr"), ID: id}
	c.RC, c.Res = e.Attach(list, c, "eth0", opts...)
	return c
}

// Attach adds c to another network as ifname (docker network connect).
func (e *Env) Attach(list *libcni.NetworkConfigList, c *Container, ifname string, opts ...func(*libcni.RuntimeConf)) (*libcni.RuntimeConf, *current.Result) {
	e.T.Helper()
	rc := Attachment(c.ID, c.NS, ifname)
	for _, o := range opts {
		o(rc)
	}
	e.T.Cleanup(func() {
		if err := e.RT.Del(context.Background(), list, rc); err != nil {
			e.T.Errorf("cleanup DEL %s/%s on %s: %v", c.ID, ifname, list.Name, err)
		}
	})
	res, err := e.RT.Add(context.Background(), list, rc)
	if err != nil {
		e.T.Fatalf("ADD %s/%s on %s: %v", c.ID, ifname, list.Name, err)
	}
	return rc, res
}

// IP returns the first address of the family ("4" or "6") in res.
func IP(t testing.TB, res *current.Result, fam string) string {
	t.Helper()
	for _, ipc := range res.IPs {
		if (ipc.Address.IP.To4() != nil) == (fam == "4") {
			return ipc.Address.IP.String()
		}
	}
	t.Fatalf("no IPv%s address in result %v", fam, res)
	return ""
}

// IP is the container's first address of the family on its first network.
func (c *Container) IP(t testing.TB, fam string) string {
	t.Helper()
	return IP(t, c.Res, fam)
}

// Ping fails the test unless from reaches addr.
func Ping(t testing.TB, from *NS, addr string) {
	t.Helper()
	if out, err := from.Exec("ping", "-c", "1", "-W", "2", addr); err != nil {
		t.Fatalf("ping %s from %s failed: %v\n%s", addr, from.Name, err, out)
	}
}

// NoPing fails the test if from reaches addr.
func NoPing(t testing.TB, from *NS, addr string) {
	t.Helper()
	if out, err := from.Exec("ping", "-c", "1", "-W", "1", addr); err == nil {
		t.Fatalf("ping %s from %s succeeded, want no reply\n%s", addr, from.Name, out)
	}
}

// SetField sets key on the i-th plugin of a conflist (a Conflist patch).
func SetField(i int, key string, value any) func(map[string]any) {
	return func(m map[string]any) {
		m["plugins"].([]any)[i].(map[string]any)[key] = value
	}
}

// SetVersion sets the conflist's cniVersion (a Conflist patch).
func SetVersion(v string) func(map[string]any) {
	return func(m map[string]any) { m["cniVersion"] = v }
}
