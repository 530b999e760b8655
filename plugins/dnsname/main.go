// Command dnsname registers a container's names and aliases on its network
// and makes sure the network's DNS server answers for them. It is chained
// after bridge and takes Podman's dnsname config. The same binary, started
// with BERTH_DNSNAME_SIDECAR set, is that DNS server (see control.go).
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/berthnet/berth/pkg/cni"
)

func main() {
	if IsSidecar() {
		os.Exit(RunSidecar())
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, cni.Versions, "berth dnsname: container names on user-defined networks, with a DNS sidecar")
}
