// Command macvlan is berth's drop-in for the reference macvlan plugin: a
// container on the physical network with its own MAC, on a VLAN
// sub-interface made (and removed with its last user) when the master
// names one that does not exist, with optional host access.
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
	}, cni.Versions, "berth macvlan: containers on the physical network and its VLANs (reference-compatible)")
}
