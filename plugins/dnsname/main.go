// Command dnsname registers a container's names and aliases on its network
// and makes sure the network's DNS server answers for them. It is chained
// after bridge and takes Podman's dnsname config. The DNS server is
// dnsname-sidecar, installed beside it (see pkg/nameserver/sidecar).
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/berthnet/berth/pkg/cni"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, cni.Versions, "berth dnsname: container names on user-defined networks, with a DNS sidecar")
}
