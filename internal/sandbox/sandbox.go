// Package sandbox makes the private network namespaces that berth's demo,
// benchmarks and tests run in, and drives plugins inside them through
// libcni exactly as containerd does on a node. Nothing here touches the
// machine's root namespace: plugins run in a private "host" namespace.
package sandbox

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
)

// NS is a named network namespace (/run/netns/<Name>).
type NS struct {
	Name string
	Path string
	ns.NetNS
}

// NewNS creates the namespace with lo up.
//
// Same as: ip netns add NAME; ip -n NAME link set lo up
func NewNS(name string) (*NS, error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	path := filepath.Join("/run/netns", name)
	netns, err := ns.GetNS(path)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	n := &NS{Name: name, Path: path, NetNS: netns}
	if _, err := n.Exec("ip", "link", "set", "lo", "up"); err != nil {
		n.Delete()
		return nil, err
	}
	return n, nil
}

// Delete closes and removes the namespace (and with it every link in it).
func (n *NS) Delete() error {
	_ = n.NetNS.Close()
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", n.Name, err, out)
	}
	return nil
}

// Exec runs a command inside the namespace and returns its combined output.
//
// Same as: ip netns exec NAME ARGS…
func (n *NS) Exec(args ...string) (string, error) {
	full := append([]string{"netns", "exec", n.Name}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w: %s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Command returns an unstarted command that will run inside the namespace.
func (n *NS) Command(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// Runtime drives plugins through libcni with every plugin process started
// inside Host.
type Runtime struct {
	Host *NS
	CNI  *libcni.CNIConfig
	// UTS, when set, is the host's UTS namespace (its own hostname, see
	// NewUTS): plugins start in it too.
	UTS *UTS
}

// NewRuntime returns a runtime finding plugins in paths and caching results
// in cacheDir (libcni's cache, which feeds prevResult to DEL and CHECK).
func NewRuntime(host *NS, cacheDir string, paths ...string) *Runtime {
	return &Runtime{Host: host, CNI: libcni.NewCNIConfigWithCacheDir(paths, cacheDir, nil)}
}

// in runs f with the calling OS thread inside the host namespace, so the
// plugin processes libcni forks from it start there.
func (r *Runtime) in(f func() error) error {
	if r.UTS != nil {
		return inHost(r.Host, r.UTS, f)
	}
	return r.Host.Do(func(ns.NetNS) error { return f() })
}

// Attachment is one container interface on a network.
func Attachment(id string, c *NS, ifname string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: c.Path, IfName: ifname}
}

// Add runs ADD for the whole list and returns the result as the current
// type whatever version the list speaks.
func (r *Runtime) Add(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (*current.Result, error) {
	var res types.Result
	err := r.in(func() (err error) {
		res, err = r.CNI.AddNetworkList(ctx, list, rt)
		return err
	})
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

// Del runs DEL for the whole list.
func (r *Runtime) Del(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return r.in(func() error { return r.CNI.DelNetworkList(ctx, list, rt) })
}

// Check runs CHECK for the whole list.
func (r *Runtime) Check(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return r.in(func() error { return r.CNI.CheckNetworkList(ctx, list, rt) })
}

// GC runs GC with the given attachments as the valid ones.
func (r *Runtime) GC(ctx context.Context, list *libcni.NetworkConfigList, valid ...*libcni.RuntimeConf) error {
	args := &libcni.GCArgs{}
	for _, v := range valid {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: v.ContainerID, IfName: v.IfName})
	}
	return r.in(func() error { return r.CNI.GCNetworkList(ctx, list, args) })
}

// Status runs STATUS for the whole list.
func (r *Runtime) Status(ctx context.Context, list *libcni.NetworkConfigList) error {
	return r.in(func() error { return r.CNI.GetStatusNetworkList(ctx, list) })
}
