package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/berthnet/berth/pkg/ipam"
)

// ipamFor is the network's IPAM for one command: host-local in-process,
// anything else (or execIPAM) by exec.
func ipamFor(conf *NetConf, args *skel.CmdArgs) ipam.Driver {
	return ipam.Driver{Plugin: plugin, Type: conf.IPAM.Type, Exec: conf.ExecIPAM, Args: args, Valid: conf.ValidAttachments}
}
