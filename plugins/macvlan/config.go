package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/registry"
)

const plugin = "macvlan"

// NetConf is the reference macvlan plugin's config, field for field, plus
// berth's additions: vlan (or a master named <parent>.<vid>) for
// sub-interfaces made on demand, hostAccess, dataDir and execIPAM.
type NetConf struct {
	types.NetConf
	Master          string `json:"master"`
	Mode            string `json:"mode"`
	MTU             int    `json:"mtu"`
	Mac             string `json:"mac"`
	LinkInContainer bool   `json:"linkInContainer"`
	BcQueueLen      uint32 `json:"bcqueuelen"`

	// Vlan puts the network on VLAN Vlan of Master: the sub-interface
	// <master>.<vlan> is made when missing (as a master named that way).
	Vlan int `json:"vlan"`
	// HostAccess keeps a macvlan shim on the parent with host routes to
	// the containers, so that the host and its containers reach each other.
	HostAccess bool `json:"hostAccess"`
	// DataDir keeps the users of shared links (sub-interfaces, shims).
	DataDir string `json:"dataDir"`
	// attachmentsDir: where the attachment is recorded for container-mode
	// and the berth CLI.
	registry.AttachConf
	// ExecIPAM runs a host-local IPAM by exec instead of in-process.
	ExecIPAM bool `json:"execIPAM"`

	Args struct {
		Cni struct {
			Mac string `json:"mac"`
		} `json:"cni"`
	} `json:"args"`
	RuntimeConfig struct {
		Mac string `json:"mac"`
	} `json:"runtimeConfig"`

	mode netlink.MacvlanMode
	mac  net.HardwareAddr
	// vlanParent and vlanID are set when the network is on a VLAN
	// sub-interface berth may have to make: Master is then its name.
	vlanParent string
	vlanID     int
	vlanField  string // the field the VLAN id came from, for errors
}

// defaultDataDir holds the state of shared links, beside host-local's
// /var/lib/cni/networks.
const defaultDataDir = "/var/lib/cni/macvlan"

// loadConf decodes and validates what can be checked without looking at
// the kernel; envArgs is CNI_ARGS (MAC=…, as the reference reads it).
func loadConf(stdin []byte, envArgs string) (*NetConf, error) {
	c := &NetConf{}
	if err := cni.Decode(plugin, stdin, c); err != nil {
		return nil, err
	}
	if err := c.validate(envArgs); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *NetConf) validate(envArgs string) error {
	if err := cni.SafeName("network name", c.Name); err != nil {
		return cni.InvalidField(plugin, "name", fmt.Sprintf("%q", c.Name), err.Error())
	}
	if c.Mode == "" {
		c.Mode = "bridge"
	}
	mode, ok := link.MacvlanModes[c.Mode]
	if !ok {
		return cni.InvalidField(plugin, "mode", fmt.Sprintf("%q", c.Mode), "must be bridge, private, vepa, passthru or source")
	}
	c.mode = mode
	if c.MTU < 0 || c.MTU > 65535 || (c.MTU != 0 && c.MTU < 68) {
		return cni.InvalidField(plugin, "mtu", c.MTU, "must be between 68 and 65535 (0: the master's)")
	}
	if c.Master != "" {
		if err := validLinkName(c.Master); err != nil {
			return cni.InvalidField(plugin, "master", fmt.Sprintf("%q", c.Master), err.Error())
		}
	}
	if c.DataDir == "" {
		c.DataDir = defaultDataDir
	}
	if !filepath.IsAbs(c.DataDir) {
		return cni.InvalidField(plugin, "dataDir", fmt.Sprintf("%q", c.DataDir), "must be an absolute path")
	}
	if c.HostAccess && c.mode != netlink.MACVLAN_MODE_BRIDGE {
		return cni.InvalidField(plugin, "hostAccess", true, fmt.Sprintf("needs mode bridge (the shim talks to the containers through the parent), not %s", c.Mode))
	}
	if err := c.vlanFromConf(); err != nil {
		return err
	}
	return c.macFromConf(envArgs)
}

// vlanFromConf reads the VLAN the network asks for: "vlan" with "master"
// as the physical parent, or a master named <parent>.<vid>. The latter is
// only a VLAN to make if no link of that name exists, which ADD decides.
func (c *NetConf) vlanFromConf() error {
	if c.Vlan != 0 {
		if c.Vlan < 1 || c.Vlan > 4094 {
			return cni.InvalidField(plugin, "vlan", c.Vlan, "must be between 1 and 4094")
		}
		if c.Master == "" {
			return cni.InvalidField(plugin, "vlan", c.Vlan, "needs master, the parent to make the sub-interface on")
		}
		if c.LinkInContainer {
			return cni.InvalidField(plugin, "vlan", c.Vlan, "sub-interfaces are made on the host: not with linkInContainer")
		}
		name := link.VlanName(c.Master, c.Vlan)
		if name == "" {
			return cni.InvalidField(plugin, "vlan", c.Vlan, fmt.Sprintf("%s.%d is longer than an interface name (15 characters)", c.Master, c.Vlan))
		}
		c.vlanParent, c.vlanID, c.vlanField = c.Master, c.Vlan, "vlan"
		c.Master = name
		return nil
	}
	if parent, vid, ok := link.SplitVlanName(c.Master); ok && !c.LinkInContainer {
		c.vlanParent, c.vlanID, c.vlanField = parent, vid, "master"
	}
	return nil
}

// macFromConf takes the MAC asked for: runtimeConfig.mac, then CNI_ARGS
// MAC, then args.cni.mac, then mac.
func (c *NetConf) macFromConf(envArgs string) error {
	mac, field := c.RuntimeConfig.Mac, "runtimeConfig.mac"
	if mac == "" {
		for _, kv := range strings.Split(envArgs, ";") {
			if k, v, ok := strings.Cut(kv, "="); ok && k == "MAC" {
				mac, field = v, "CNI_ARGS MAC"
			}
		}
	}
	if mac == "" {
		mac, field = c.Args.Cni.Mac, "args.cni.mac"
	}
	if mac == "" {
		mac, field = c.Mac, "mac"
	}
	if mac == "" {
		return nil
	}
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return cni.InvalidField(plugin, field, fmt.Sprintf("%q", mac), "not a 48-bit MAC address")
	}
	if hw[0]&1 == 1 {
		return cni.InvalidField(plugin, field, mac, "a multicast MAC cannot be an interface address")
	}
	c.mac = hw
	return nil
}

// validLinkName applies the kernel's rules for interface names.
func validLinkName(name string) error {
	if len(name) > 15 {
		return fmt.Errorf("longer than 15 characters")
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n") {
		return fmt.Errorf("not a valid interface name")
	}
	return nil
}

// Aliases berth puts on the links it makes: its owner. Shared links
// (sub-interfaces, shims) are the plugin's; a container's macvlan is its
// attachment's.
const (
	vlanAlias = "berth:macvlan:vlan"
	shimAlias = "berth:macvlan:shim"
)

// ownerAlias is the container macvlan's alias: network/containerID/ifname,
// hashed when longer than an alias may be.
func ownerAlias(network, containerID, ifName string) string {
	a := "berth:" + network + "/" + containerID + "/" + ifName
	if len(a) > 255 {
		sum := sha256.Sum256([]byte(a))
		a = "berth:" + hex.EncodeToString(sum[:16])
	}
	return a
}

// shimName is the host-access shim's name for a parent: one per parent,
// derived so every process finds the same one.
func shimName(parent string) string {
	sum := sha256.Sum256([]byte(parent))
	return "bmv" + hex.EncodeToString(sum[:4])
}
