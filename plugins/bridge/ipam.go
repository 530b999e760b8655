package main

import (
	"context"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/ipam"
)

// ipamDriver runs the network's IPAM for one command.
//
// berth's host-local is run in-process through pkg/ipam: the same code,
// the same on-disk store and the same flock as the host-local binary, so
// the outcome is identical to delegating (also next to reference host-local
// processes on a live node), minus one process start, the largest single
// cost of an ADD. Any other IPAM type, or "execIPAM": true, is delegated
// by exec as the CNI spec describes.
type ipamDriver struct {
	conf *NetConf
	args *skel.CmdArgs
}

func (d ipamDriver) none() bool { return d.conf.IPAM.Type == "" }

func (d ipamDriver) inProcess() bool {
	return d.conf.IPAM.Type == ipam.Plugin && !d.conf.ExecIPAM
}

func (d ipamDriver) wrap(err error) error {
	if err == nil {
		return nil
	}
	return cni.Wrap(cni.CodeDelegate, err, "%s: ipam %s", plugin, d.conf.IPAM.Type)
}

func (d ipamDriver) config() (*ipam.Config, error) {
	c, err := ipam.Parse(d.args.StdinData, d.args.Args)
	return c, d.wrap(err)
}

func (d ipamDriver) add() (*current.Result, error) {
	if d.none() {
		return &current.Result{CNIVersion: current.ImplementedSpecVersion}, nil
	}
	if d.inProcess() {
		c, err := d.config()
		if err != nil {
			return nil, err
		}
		res, err := ipam.Add(c, d.args.ContainerID, d.args.IfName)
		return res, d.wrap(err)
	}
	r, err := invoke.DelegateAdd(context.Background(), d.conf.IPAM.Type, d.args.StdinData, nil)
	if err != nil {
		return nil, d.wrap(err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, cni.Errorf(cni.CodeDecode, "%s: ipam %s result: %v", plugin, d.conf.IPAM.Type, err)
	}
	return res, nil
}

func (d ipamDriver) del() error {
	if d.none() {
		return nil
	}
	if d.inProcess() {
		c, err := d.config()
		if err != nil {
			return err
		}
		return d.wrap(ipam.Del(c, d.args.ContainerID, d.args.IfName))
	}
	return d.wrap(invoke.DelegateDel(context.Background(), d.conf.IPAM.Type, d.args.StdinData, nil))
}

func (d ipamDriver) check(prev *current.Result) error {
	if d.none() {
		return nil
	}
	if d.inProcess() {
		c, err := d.config()
		if err != nil {
			return err
		}
		return d.wrap(ipam.Check(c, d.args.ContainerID, d.args.IfName, prev))
	}
	return d.wrap(invoke.DelegateCheck(context.Background(), d.conf.IPAM.Type, d.args.StdinData, nil))
}

func (d ipamDriver) gc() error {
	if d.none() {
		return nil
	}
	if d.inProcess() {
		c, err := d.config()
		if err != nil {
			return err
		}
		return d.wrap(ipam.GC(c, cni.ValidSet(d.conf.ValidAttachments)))
	}
	return d.wrap(invoke.DelegateGC(context.Background(), d.conf.IPAM.Type, d.args.StdinData, nil))
}

func (d ipamDriver) status() error {
	if d.none() {
		return nil
	}
	var err error
	if d.inProcess() {
		var c *ipam.Config
		if c, err = ipam.Parse(d.args.StdinData, d.args.Args); err == nil {
			err = ipam.Status(c)
		}
	} else {
		err = invoke.DelegateStatus(context.Background(), d.conf.IPAM.Type, d.args.StdinData, nil)
	}
	if err != nil {
		return cni.Wrap(cni.CodePluginNotAvailable, err, "%s: ipam %s", plugin, d.conf.IPAM.Type)
	}
	return nil
}
