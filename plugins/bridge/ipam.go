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

// do runs one result-less command: inproc on the parsed config when
// host-local runs in-process, else delegated by exec.
func (d ipamDriver) do(inproc func(*ipam.Config) error, delegate func(context.Context, string, []byte, invoke.Exec) error) error {
	if d.none() {
		return nil
	}
	if !d.inProcess() {
		return delegate(context.Background(), d.conf.IPAM.Type, d.args.StdinData, nil)
	}
	c, err := ipam.Parse(d.args.StdinData, d.args.Args)
	if err != nil {
		return err
	}
	return inproc(c)
}

func (d ipamDriver) del() error {
	return d.wrap(d.do(func(c *ipam.Config) error {
		return ipam.Del(c, d.args.ContainerID, d.args.IfName)
	}, invoke.DelegateDel))
}

func (d ipamDriver) check(prev *current.Result) error {
	return d.wrap(d.do(func(c *ipam.Config) error {
		return ipam.Check(c, d.args.ContainerID, d.args.IfName, prev)
	}, invoke.DelegateCheck))
}

func (d ipamDriver) gc() error {
	return d.wrap(d.do(func(c *ipam.Config) error {
		return ipam.GC(c, cni.ValidSet(d.conf.ValidAttachments))
	}, invoke.DelegateGC))
}

// status is code 50 (not available) whatever the IPAM's own code.
func (d ipamDriver) status() error {
	if err := d.do(ipam.Status, invoke.DelegateStatus); err != nil {
		return cni.Wrap(cni.CodePluginNotAvailable, err, "%s: ipam %s", plugin, d.conf.IPAM.Type)
	}
	return nil
}
