package nstest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
)

// Runtime drives plugins through libcni, as containerd does, with every
// plugin process started inside Host (a private namespace standing in for
// the node's root namespace).
type Runtime struct {
	Host *NS
	CNI  *libcni.CNIConfig
}

// NewRuntime returns a runtime using the built plugins and a private libcni
// cache directory.
func NewRuntime(t testing.TB, host *NS, extraPaths ...string) *Runtime {
	t.Helper()
	paths := append([]string{CNIPath(t)}, extraPaths...)
	return &Runtime{Host: host, CNI: libcni.NewCNIConfigWithCacheDir(paths, t.TempDir(), nil)}
}

// in runs f with the calling OS thread inside the host namespace, so the
// plugin processes libcni forks start there.
func (r *Runtime) in(f func() error) error {
	return r.Host.Do(func(ns.NetNS) error { return f() })
}

// Attachment is one container interface on a network.
func Attachment(id string, c *NS, ifname string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: c.Path, IfName: ifname}
}

// Add runs ADD for the whole list and returns the result as the current
// (1.1.0) type whatever version the list speaks.
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

// GC runs GC with the given valid attachments.
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

// Conflist parses a conflist after applying patches to its JSON (see
// DataDir). It fails the test on error.
func Conflist(t testing.TB, raw []byte, patches ...func(map[string]any)) *libcni.NetworkConfigList {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("conflist: %v", err)
	}
	for _, p := range patches {
		p(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		t.Fatalf("conflist: %v", err)
	}
	return list
}

// DataDir points every plugin's state at dir/<type> and its ipam's at
// dir/networks (host-local's layout: dataDir/<network>/<ip>), so tests never
// share /var/lib/cni or /run/cni with the machine or each other. Plugins
// ignore fields they do not know, so setting dataDir everywhere is harmless.
func DataDir(dir string) func(map[string]any) {
	return func(m map[string]any) {
		plugins, _ := m["plugins"].([]any)
		for _, p := range plugins {
			pm, ok := p.(map[string]any)
			if !ok {
				continue
			}
			typ, _ := pm["type"].(string)
			pm["dataDir"] = filepath.Join(dir, typ)
			if ipam, ok := pm["ipam"].(map[string]any); ok && len(ipam) > 0 {
				ipam["dataDir"] = filepath.Join(dir, "networks")
			}
		}
	}
}
