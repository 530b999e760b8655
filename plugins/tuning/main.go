// Command tuning is berth's drop-in for the reference tuning plugin: it sets
// sysctls and link attributes (mac, mtu, promisc, allmulti, txQLen) of the
// container interface made by the previous plugin in the chain, and puts the
// old values back on DEL.
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
	}, cni.Versions, "berth tuning: sysctls and link attributes of a container interface")
}
