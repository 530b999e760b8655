package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/ipam"
)

// skel has already checked CNI_CONTAINERID and CNI_IFNAME against the
// spec's rules; every handler parses and validates the config first, so a
// bad config fails the same way for every command.

func cmdAdd(args *skel.CmdArgs) error {
	c, err := ipam.Parse(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	res, err := ipam.Add(c, args.ContainerID, args.IfName)
	if err != nil {
		return err
	}
	return cni.Print(res, c.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	c, err := ipam.Parse(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	return ipam.Del(c, args.ContainerID, args.IfName)
}

func cmdCheck(args *skel.CmdArgs) error {
	c, err := ipam.Parse(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	var nc types.NetConf
	if err := cni.Decode(ipam.Plugin, args.StdinData, &nc); err != nil {
		return err
	}
	prev, err := cni.PrevResult(ipam.Plugin, &nc)
	if err != nil {
		return err
	}
	return ipam.Check(c, args.ContainerID, args.IfName, prev)
}

func cmdGC(args *skel.CmdArgs) error {
	c, err := ipam.Parse(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	var nc types.NetConf
	if err := cni.Decode(ipam.Plugin, args.StdinData, &nc); err != nil {
		return err
	}
	return ipam.GC(c, cni.ValidSet(nc.ValidAttachments))
}

func cmdStatus(args *skel.CmdArgs) error {
	c, err := ipam.Parse(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	return ipam.Status(c)
}
