// Command dnsname-etcd is the dnsname plugin with the etcd registry linked
// in. dnsname runs it (exec, same command and config) for a network whose
// registry.backend is etcd, so that the etcd client's start-up cost (~2-3 ms
// of package init, a binary three times larger) is paid only by those
// networks, not by every Podman ADD and DEL. It is under cmd/ because
// runtimes never name it in a config; `make build` and `make install` put
// it beside dnsname, where dnsname finds it (or through CNI_PATH).
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/etcdstore"
	"github.com/berthnet/berth/plugins/dnsname/dnsplugin"
)

func main() {
	dnsplugin.OpenEtcd = func(c *registry.Config) (registry.Store, error) { return etcdstore.OpenConfig(c) }
	skel.PluginMainFuncs(dnsplugin.Funcs(), cni.Versions, dnsplugin.About+" (etcd registry)")
}
