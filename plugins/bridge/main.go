// Command bridge is berth's drop-in for the reference bridge plugin: a
// container joins a Linux bridge through a veth pair, with its address from
// the IPAM plugin, the bridge as gateway and optional masquerade.
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
	}, cni.Versions, "berth bridge: containers on a Linux bridge (reference-compatible)")
}
