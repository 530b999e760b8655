package nstest

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/sandbox"
)

// Runtime drives plugins through libcni, as containerd does, with every
// plugin process started inside Host (a private namespace standing in for
// the node's root namespace). Add, Del, Check, GC and Status come from
// sandbox.Runtime.
type Runtime struct {
	*sandbox.Runtime
	Host *NS
}

// NewRuntime returns a runtime using the built plugins and a private libcni
// cache directory.
func NewRuntime(t testing.TB, host *NS, extraPaths ...string) *Runtime {
	t.Helper()
	paths := append([]string{CNIPath(t)}, extraPaths...)
	return &Runtime{Runtime: sandbox.NewRuntime(host.NS, t.TempDir(), paths...), Host: host}
}

// Attachment is one container interface on a network.
func Attachment(id string, c *NS, ifname string) *libcni.RuntimeConf {
	return sandbox.Attachment(id, c.NS, ifname)
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

// DataDir points every plugin's state at dir/<type>, its ipam's at
// dir/networks (host-local's layout: dataDir/<network>/<ip>) and the
// attachments registry at dir/attachments, so tests never
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
			// One attachments registry shared by every plugin of the
			// test, as /run/cni/berth/attachments is on a node.
			pm["attachmentsDir"] = filepath.Join(dir, "attachments")
			if ipam, ok := pm["ipam"].(map[string]any); ok && len(ipam) > 0 {
				ipam["dataDir"] = filepath.Join(dir, "networks")
			}
		}
	}
}
