// Command bridge is berth's drop-in for the reference bridge plugin: a
// container joins a Linux bridge through a veth pair, with its address from
// the IPAM plugin, the bridge as gateway and optional masquerade.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
)

func main() {
	// A plugin lives for one command: its netfilter sockets are
	// released by the kernel after it exits, so no close waits here.
	firewall.ReleaseSocketsLate()
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, cni.Versions, "berth bridge: containers on a Linux bridge (reference-compatible)")
}
