// Command dnsname registers a container's names and aliases on its network
// and makes sure the network's DNS server answers for them. It is chained
// after bridge and takes Podman's dnsname config. The DNS server is
// dnsname-sidecar, installed beside it (see pkg/nameserver/sidecar). The
// logic is in dnsplugin; this binary does not link the etcd client and
// hands a config with the etcd registry to dnsname-etcd (cmd/dnsname-etcd).
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/plugins/dnsname/dnsplugin"
)

func main() {
	skel.PluginMainFuncs(dnsplugin.Funcs(), cni.Versions, dnsplugin.About)
}
