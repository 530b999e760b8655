package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthnet/berth/internal/crashpoint"
	"github.com/berthnet/berth/internal/steptrace"
	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
)

const plugin = "firewall"

// NetConf holds the reference firewall plugin's fields. The default backend is
// nftables (the reference picks firewalld when it runs, else iptables).
type NetConf struct {
	types.NetConf
	Backend                string `json:"backend"`
	IptablesAdminChainName string `json:"iptablesAdminChainName,omitempty"`
	FirewalldZone          string `json:"firewalldZone,omitempty"`
	IngressPolicy          string `json:"ingressPolicy,omitempty"`

	// iso is the backend's Isolator.
	iso firewall.Isolator
}

// firewalldRunning is how the reference detects firewalld; berth only uses
// it to word the refusal.
func firewalldRunning() bool {
	_, err := os.Stat("/run/firewalld/firewalld.pid")
	return err == nil
}

// loadConf decodes and validates stdin; every error is a CNI error.
func loadConf(stdin []byte) (*NetConf, error) {
	c := &NetConf{}
	if err := cni.Decode(plugin, stdin, c); err != nil {
		return nil, err
	}
	if err := cni.SafeName("name", c.Name); err != nil {
		return nil, cni.InvalidField(plugin, "name", c.Name, err.Error())
	}
	if c.Backend == "firewalld" {
		why := "firewalld is not running on this node"
		if firewalldRunning() {
			why = "berth does not drive firewalld; use \"nftables\", which coexists with firewalld's own table"
		}
		return nil, cni.InvalidField(plugin, "backend", "firewalld", why)
	}
	if c.IptablesAdminChainName != "" && (len(c.IptablesAdminChainName) > 28 || cni.SafeName("", c.IptablesAdminChainName) != nil) {
		return nil, cni.InvalidField(plugin, "iptablesAdminChainName", c.IptablesAdminChainName, "must be an iptables chain name (at most 28 characters of [a-zA-Z0-9_.-])")
	}
	var err error
	if c.iso, err = firewall.NewIsolator(c.Backend, c.IptablesAdminChainName); err != nil {
		return nil, err
	}
	if err := (firewall.Isolation{Policy: c.IngressPolicy, Bridge: "x", HostVeth: "x"}).Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// isolation builds the attachment's entry from prevResult: its IPs, the
// bridge (first interface, as the reference reads it) and the host end of
// the veth (the first other interface outside any sandbox).
func isolation(c *NetConf, args *skel.CmdArgs, prev *current.Result) firewall.Isolation {
	a := firewall.Isolation{Network: c.Name, ContainerID: args.ContainerID, IfName: args.IfName, Policy: c.IngressPolicy}
	if prev == nil {
		return a
	}
	for _, ip := range prev.IPs {
		ipn := ip.Address
		a.IPs = append(a.IPs, &ipn)
	}
	if len(prev.Interfaces) > 0 && prev.Interfaces[0] != nil {
		a.Bridge = prev.Interfaces[0].Name
	}
	for _, i := range prev.Interfaces[min(1, len(prev.Interfaces)):] {
		if i != nil && i.Sandbox == "" {
			a.HostVeth = i.Name
			break
		}
	}
	return a
}

func prepare(args *skel.CmdArgs, needPrev bool) (*NetConf, firewall.Isolator, *current.Result, error) {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cni.SafeContainerID(args.ContainerID); err != nil {
		return nil, nil, nil, cni.Errorf(cni.CodeInvalidEnv, "%s: %v", plugin, err)
	}
	prev, err := cni.PrevResult(plugin, &c.NetConf)
	if err != nil {
		return nil, nil, nil, err
	}
	if needPrev && prev == nil {
		return nil, nil, nil, cni.Errorf(cni.CodeInvalidConfig, "%s: prevResult missing: chain firewall after a plugin that creates the interface (bridge)", plugin)
	}
	return c, c.iso, prev, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	tr := steptrace.Start(plugin + " ADD")
	defer tr.Done()
	c, iso, prev, err := prepare(args, true)
	if err != nil {
		return err
	}
	tr.Mark("conf")
	a := isolation(c, args, prev)
	if err := a.Validate(); err != nil {
		return err
	}
	if err := iso.AddIsolation(a); err != nil {
		// A half-applied ADD (iptables is many commands) is undone: the
		// runtime will not call DEL for an ADD that failed.
		cni.Undone(plugin, "removing rules", iso.DelIsolation(a))
		return cni.Wrap(cni.CodeKernel, err, "%s: adding rules", plugin)
	}
	tr.Mark("rules")
	crashpoint.Hit("firewall.add.rules")
	return cni.Print(prev, c.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	c, iso, prev, err := prepare(args, false)
	if err != nil {
		return err
	}
	crashpoint.Hit("firewall.del")
	if err := iso.DelIsolation(isolation(c, args, prev)); err != nil {
		return cni.Wrap(cni.CodeKernel, err, "%s: removing rules", plugin)
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	c, iso, prev, err := prepare(args, true)
	if err != nil {
		return err
	}
	if err := iso.CheckIsolation(isolation(c, args, prev)); err != nil {
		return cni.Wrap(cni.CodeKernel, err, "%s: check", plugin)
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := c.iso.GCIsolation(c.Name, cni.ValidSet(c.ValidAttachments)); err != nil {
		return cni.Wrap(cni.CodeKernel, err, "%s: gc", plugin)
	}
	return nil
}

// cmdStatus: ready once the config is valid; the kernel interfaces are
// checked by every ADD.
func cmdStatus(args *skel.CmdArgs) error {
	_, err := loadConf(args.StdinData)
	return err
}
