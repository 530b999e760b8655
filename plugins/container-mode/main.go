// Command container-mode is Docker's --net=container:<name> as a CNI
// plugin: ADD makes the runtime's netns path (CNI_NETNS) refer to another
// container's network namespace, found by name, ID or ID prefix in the
// attachments registry that berth's attaching plugins keep, so a process
// started "in CNI_NETNS" shares that container's interfaces, addresses and
// localhost. DEL undoes it and leaves the other container untouched.
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
	}, cni.Versions, "berth container-mode: join another container's network namespace (docker --net=container:NAME)")
}
