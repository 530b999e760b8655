// Command loopback is berth's drop-in for the reference loopback plugin: it
// brings lo up in the container's network namespace.
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
	}, cni.Versions, "berth loopback: brings lo up in the container netns")
}
