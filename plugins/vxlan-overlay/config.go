package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/overlay"
	"github.com/berthnet/berth/pkg/registry"
)

const plugin = "vxlan-overlay"

// DefaultDataDir keeps the host's identity and leases: under /var/lib, as
// they must outlive a reboot for the host to get its subnet back.
const DefaultDataDir = "/var/lib/cni/vxlan-overlay"

// Defaults.
const (
	defaultPort          = 4789 // IANA's VXLAN port
	defaultHostSubnetLen = 24
	defaultLeaseTTL      = 60 // seconds
	// vxlanOverhead is what encapsulation adds on an IPv4 underlay: outer
	// IPv4 (20), UDP (8), VXLAN (8) and the inner Ethernet header (14).
	vxlanOverhead = 50
)

// NetConf is the plugin's config.
type NetConf struct {
	types.NetConf
	// attachmentsDir: where the attachment is recorded for container-mode
	// and the berth CLI.
	registry.AttachConf
	// VNI identifies the overlay on every host (1..16777215).
	VNI int `json:"vni"`
	// Subnet is the whole overlay; each host leases a /HostSubnetLen of it.
	Subnet        string `json:"subnet"`
	HostSubnetLen int    `json:"hostSubnetLen"`
	// Port is the VXLAN UDP port (default 4789).
	Port int `json:"port"`
	// Underlay is the interface, or one of its addresses, that tunnels
	// are sourced from; default: the interface of the default route.
	Underlay string `json:"underlay"`
	// MTU of the containers; 0: the underlay's minus 50.
	MTU           int           `json:"mtu"`
	IPMasq        bool          `json:"ipMasq"`
	IPMasqBackend string        `json:"ipMasqBackend"`
	Store         overlay.Store `json:"store"`
	// DataDir holds the host ID, the leases, the attachments, the IPAM
	// store and the daemon's files.
	DataDir string `json:"dataDir"`
	// HostID overrides the generated host identity (DataDir/host-id).
	HostID string `json:"hostID"`
	// LeaseTTL is the etcd lease's TTL in seconds (default 60): how long a
	// dead host's subnet stays reserved.
	LeaseTTL int64 `json:"leaseTTL"`

	subnet netip.Prefix
}

func loadConf(stdin []byte) (*NetConf, error) {
	c := &NetConf{}
	if err := cni.Decode(plugin, stdin, c); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *NetConf) validate() error {
	if c.VNI < 1 || c.VNI > 1<<24-1 {
		return cni.InvalidField(plugin, "vni", c.VNI, "must be between 1 and 16777215")
	}
	p, err := netip.ParsePrefix(c.Subnet)
	if err != nil || !p.Addr().Is4() {
		return cni.InvalidField(plugin, "subnet", fmt.Sprintf("%q", c.Subnet), "must be an IPv4 prefix (10.96.0.0/16)")
	}
	c.subnet = p.Masked()
	if c.HostSubnetLen == 0 {
		c.HostSubnetLen = defaultHostSubnetLen
	}
	if c.HostSubnetLen <= p.Bits() || c.HostSubnetLen > 30 {
		return cni.InvalidField(plugin, "hostSubnetLen", c.HostSubnetLen, fmt.Sprintf("must be longer than the subnet's /%d and at most 30", p.Bits()))
	}
	if c.Port == 0 {
		c.Port = defaultPort
	}
	if c.Port < 1 || c.Port > 65535 {
		return cni.InvalidField(plugin, "port", c.Port, "must be between 1 and 65535")
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return cni.InvalidField(plugin, "mtu", c.MTU, "must be between 68 and 65535")
	}
	switch c.IPMasqBackend {
	case "", firewall.NFTables, firewall.IPTables:
	default:
		return cni.InvalidField(plugin, "ipMasqBackend", fmt.Sprintf("%q", c.IPMasqBackend), `must be "nftables" or "iptables"`)
	}
	switch c.Store.Type {
	case "":
		c.Store.Type = overlay.StoreLocal
	case overlay.StoreLocal:
	case overlay.StoreEtcd:
		if len(c.Store.Endpoints) == 0 {
			return cni.InvalidField(plugin, "store.endpoints", "[]", "the etcd store needs at least one endpoint")
		}
	default:
		return cni.InvalidField(plugin, "store.type", fmt.Sprintf("%q", c.Store.Type), `must be "etcd" or "local"`)
	}
	if c.IPAM.Type != "" {
		return cni.InvalidField(plugin, "ipam.type", fmt.Sprintf("%q", c.IPAM.Type), "the overlay allocates from this host's leased subnet itself: remove ipam")
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = defaultLeaseTTL
	}
	if c.LeaseTTL < 5 {
		return cni.InvalidField(plugin, "leaseTTL", c.LeaseTTL, "must be at least 5 seconds")
	}
	if err := cni.SafeName("network name", c.Name); err != nil {
		return cni.InvalidField(plugin, "name", fmt.Sprintf("%q", c.Name), err.Error())
	}
	return nil
}

// Device names: the VNI is the overlay's identity on every host. The
// shared prefixes are what the isolation between overlays matches.
const (
	devicePrefix = "berthvx"
	bridgePrefix = "berthbr"
)

// device is the VXLAN device.
func (c *NetConf) device() string { return devicePrefix + strconv.Itoa(c.VNI) }

// bridge is the host's bridge of the overlay.
func (c *NetConf) bridge() string { return bridgePrefix + strconv.Itoa(c.VNI) }

func (c *NetConf) names() firewall.OverlayNames {
	return firewall.OverlayNames{Bridge: c.bridge(), Device: c.device(), BridgePrefix: bridgePrefix, DevicePrefix: devicePrefix}
}

// network is what the daemon is told about this network.
func (c *NetConf) network() *overlay.Network {
	return &overlay.Network{
		Name: c.Name, VNI: c.VNI, Device: c.device(), Subnet: c.subnet, HostSubnetLen: c.HostSubnetLen,
		Store: c.Store, LeaseFile: c.leaseFile(), LeaseTTL: c.LeaseTTL,
	}
}

func (c *NetConf) leaseFile() string {
	return filepath.Join(c.DataDir, "leases", strconv.Itoa(c.VNI)+".json")
}

func (c *NetConf) client() *overlay.Client {
	return &overlay.Client{Config: overlay.Config{DataDir: c.DataDir, LogFile: filepath.Join(c.DataDir, "berth-overlayd.log")}}
}

// ipamConf is the host-local config of this host's subnet: the whole
// subnet but its gateway, a default route through the gateway.
func (c *NetConf) ipamConf(hostSubnet netip.Prefix) []byte {
	b, _ := json.Marshal(map[string]any{
		"cniVersion": c.CNIVersion,
		"name":       c.Name,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": filepath.Join(c.DataDir, "ipam"),
			"ranges":  [][]map[string]string{{{"subnet": hostSubnet.String(), "gateway": overlay.Gateway(hostSubnet).String()}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
		},
	})
	return b
}
