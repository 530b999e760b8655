package main

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/registry"
)

const plugin = "bridge"

// NetConf is the reference bridge plugin's config, field for field, plus
// berth's additions (macFromIP). Fields berth does not implement are
// decoded so that setting them is a clear "unsupported" error rather than
// silently ignored.
type NetConf struct {
	types.NetConf
	BrName        string `json:"bridge"`
	IsGW          bool   `json:"isGateway"`
	IsDefaultGW   bool   `json:"isDefaultGateway"`
	ForceAddress  bool   `json:"forceAddress"`
	IPMasq        bool   `json:"ipMasq"`
	IPMasqBackend string `json:"ipMasqBackend"`
	MTU           int    `json:"mtu"`
	HairpinMode   bool   `json:"hairpinMode"`
	PromiscMode   bool   `json:"promiscMode"`
	// MacFromIP gives containers Docker's 02:42:<IPv4 bytes> MACs.
	MacFromIP bool `json:"macFromIP"`
	// ExecIPAM runs a host-local IPAM by exec instead of in-process.
	ExecIPAM bool `json:"execIPAM"`

	// Accepted with their default values only.
	Vlan                      int             `json:"vlan"`
	VlanTrunk                 json.RawMessage `json:"vlanTrunk"`
	PreserveDefaultVlan       *bool           `json:"preserveDefaultVlan"`
	MacSpoofChk               bool            `json:"macspoofchk"`
	DisableContainerInterface bool            `json:"disableContainerInterface"`
	PortIsolation             bool            `json:"portIsolation"`
	EnableDad                 bool            `json:"enabledad"`

	Args struct {
		Cni struct {
			Mac string `json:"mac"`
		} `json:"cni"`
	} `json:"args"`
	RuntimeConfig struct {
		Mac string `json:"mac"`
	} `json:"runtimeConfig"`

	// attachmentsDir: where the attachment is recorded for container-mode.
	registry.AttachConf

	// mac is the MAC asked for (runtimeConfig.mac, then args.cni.mac).
	mac net.HardwareAddr
}

// defaultBridge is the reference plugin's default bridge name.
const defaultBridge = "cni0"

func loadConf(stdin []byte) (*NetConf, error) {
	c := &NetConf{BrName: defaultBridge}
	if err := cni.Decode(plugin, stdin, c); err != nil {
		return nil, err
	}
	// The name keys the IPAM store and the masquerade rules: refuse a bad
	// one before the bridge is made, not when IPAM fails after it.
	if err := cni.SafeName("name", c.Name); err != nil {
		return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: %v", plugin, err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *NetConf) validate() error {
	if c.BrName == "" {
		c.BrName = defaultBridge
	}
	if err := link.ValidName(c.BrName); err != nil {
		return cni.InvalidField(plugin, "bridge", fmt.Sprintf("%q", c.BrName), err.Error())
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return cni.InvalidField(plugin, "mtu", c.MTU, "must be between 68 and 65535")
	}
	switch c.IPMasqBackend {
	case "", firewall.NFTables, firewall.IPTables:
	default:
		return cni.InvalidField(plugin, "ipMasqBackend", fmt.Sprintf("%q", c.IPMasqBackend), `must be "nftables" or "iptables"`)
	}
	if c.IsDefaultGW {
		// As in the reference plugin: a default gateway is a gateway.
		c.IsGW = true
	}
	unsupported := map[string]bool{
		"vlan": c.Vlan != 0,
		// Only meaningful with VLAN filtering (the reference's default is
		// true, which is what berth does).
		"preserveDefaultVlan": c.PreserveDefaultVlan != nil && !*c.PreserveDefaultVlan,
		// berth adds container addresses with nodad (IPAM guarantees
		// them unique) and does not wait for DAD to settle.
		"enabledad":                 c.EnableDad,
		"vlanTrunk":                 len(c.VlanTrunk) > 0 && string(c.VlanTrunk) != "null" && string(c.VlanTrunk) != "[]",
		"macspoofchk":               c.MacSpoofChk,
		"disableContainerInterface": c.DisableContainerInterface,
		"portIsolation":             c.PortIsolation,
	}
	for _, f := range []string{"vlan", "vlanTrunk", "preserveDefaultVlan", "macspoofchk", "disableContainerInterface", "portIsolation", "enabledad"} {
		if unsupported[f] {
			return cni.Errorf(cni.CodeUnsupportedField, "%s: %s: not supported by berth's bridge (remove it or use the reference plugin)", plugin, f)
		}
	}
	mac := c.RuntimeConfig.Mac
	field := "runtimeConfig.mac"
	if mac == "" {
		mac, field = c.Args.Cni.Mac, "args.cni.mac"
	}
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil || len(hw) != 6 {
			return cni.InvalidField(plugin, field, fmt.Sprintf("%q", mac), "not a 48-bit MAC address")
		}
		if hw[0]&1 == 1 {
			return cni.InvalidField(plugin, field, mac, "a multicast MAC cannot be an interface address")
		}
		c.mac = hw
	}
	return nil
}

// macFromIP is Docker's MAC for an IPv4 address: 02:42 then the address.
func macFromIP(ip net.IP) net.HardwareAddr {
	v4 := ip.To4()
	return net.HardwareAddr{0x02, 0x42, v4[0], v4[1], v4[2], v4[3]}
}
