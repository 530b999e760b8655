// Command vxlan-overlay puts containers of several hosts on one overlay
// network: each host holds a subnet of the overlay (leased in etcd, or in
// a file on a single host), its containers join a bridge whose gateway is
// that subnet's first address, and a VXLAN device carries traffic to the
// other hosts' subnets, programmed by berth-overlayd (pkg/overlay).
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
	}, cni.Versions, "berth vxlan-overlay: containers of many hosts on one VXLAN overlay")
}
