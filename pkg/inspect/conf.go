// Package inspect builds the operator's view of berth's networks: what the
// CNI config directory declares (libcni's lookup rules), what berth's
// stores record (the attachments registry, the IPAM store, the dnsname
// registry, the nftables port maps) and what the kernel has (each
// attachment's namespace and interfaces), so `berth network inspect` can
// show a record whose namespace or interface is gone as stale.
//
// Everything is read, never written: the commands that change state
// (prune, gc) live in internal/cli and act through the plugins' DEL and
// the owner tags.
package inspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/ipam"
	"github.com/berthnet/berth/pkg/registry"
)

// DefaultConfDir is where runtimes keep CNI network configs.
const DefaultConfDir = "/etc/cni/net.d"

// DefaultDNSDir is the dnsname plugin's default dataDir (its registry is
// in <dataDir>/registry).
const DefaultDNSDir = "/run/cni/dnsname"

// Conf is one network as the config directory declares it.
type Conf struct {
	File string
	List *libcni.NetworkConfigList
	// Fields of its plugins that say where berth's state is.
	AttachmentsDir string // any plugin's attachmentsDir, else the default
	IPAMDir        string // the ipam's dataDir, else host-local's default
	DNSDir         string // dnsname's registry dir, "" without dnsname or with etcd
	IPAMType       string
	Ranges         []RangeConf
	Bridge         string
	IngressPolicy  string // the firewall plugin's, "" without one
	FirewallType   string // "firewall" when chained
	Masquerade     bool
	Portmap        bool
	// PortmapIPTables: portmap's backend is iptables, whose rules
	// ListPublishedIPTables reads.
	PortmapIPTables bool
}

// RangeConf is one IPAM range as configured ("auto" subnets included).
type RangeConf struct {
	Subnet     string `json:"subnet"`
	Gateway    string `json:"gateway,omitempty"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
}

// Driver is the network's first plugin type, as `docker network ls` shows
// the driver.
func (c *Conf) Driver() string {
	if len(c.List.Plugins) == 0 {
		return ""
	}
	return c.List.Plugins[0].Network.Type
}

// Plugins are the chain's types in order.
func (c *Conf) Plugins() []string {
	out := make([]string, 0, len(c.List.Plugins))
	for _, p := range c.List.Plugins {
		out = append(out, p.Network.Type)
	}
	return out
}

// LoadConfs reads every network of dir with libcni's rules: .conflist
// files in name order, then the single-plugin .conf and .json files
// (up-converted, as LoadNetworkConf does); the first file of a name wins,
// as libcni.LoadNetworkConf(dir, name) would return it. A file that does
// not parse is reported in errs and skipped.
func LoadConfs(dir string) (confs []*Conf, errs []error) {
	seen := map[string]bool{}
	add := func(file string, list *libcni.NetworkConfigList) {
		if seen[list.Name] {
			return
		}
		seen[list.Name] = true
		c, err := parseConf(file, list)
		if err != nil {
			errs = append(errs, err)
			return
		}
		confs = append(confs, c)
	}
	lists, err := libcni.ConfFiles(dir, []string{".conflist"})
	if err != nil {
		return nil, []error{fmt.Errorf("config dir %s: %w", dir, err)}
	}
	sort.Strings(lists)
	for _, f := range lists {
		list, err := libcni.NetworkConfFromFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		add(f, list)
	}
	singles, err := libcni.ConfFiles(dir, []string{".conf", ".json"})
	if err != nil {
		return confs, append(errs, fmt.Errorf("config dir %s: %w", dir, err))
	}
	sort.Strings(singles)
	for _, f := range singles {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		list, err := singleToList(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		add(f, list)
	}
	return confs, errs
}

// ErrNoNetwork is a network name no config declares.
var ErrNoNetwork = errors.New("no such network")

// FindConf returns the named network of dir.
func FindConf(dir, name string) (*Conf, error) {
	confs, errs := LoadConfs(dir)
	for _, c := range confs {
		if c.List.Name == name {
			return c, nil
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %q in %s (and %d config files did not load: %v)", ErrNoNetwork, name, dir, len(errs), errs[0])
	}
	return nil, fmt.Errorf("%w: %q in %s", ErrNoNetwork, name, dir)
}

// pluginFields are the fields of any plugin that locate state or shape
// the view.
type pluginFields struct {
	Type           string `json:"type"`
	AttachmentsDir string `json:"attachmentsDir"`
	DataDir        string `json:"dataDir"`
	Bridge         string `json:"bridge"`
	Backend        string `json:"backend"`
	IPMasq         bool   `json:"ipMasq"`
	IngressPolicy  string `json:"ingressPolicy"`
	Registry       *struct {
		Backend string `json:"backend"`
		Dir     string `json:"dir"`
	} `json:"registry"`
	IPAM *struct {
		Type    string `json:"type"`
		DataDir string `json:"dataDir"`
		RangeConf
		Ranges [][]RangeConf `json:"ranges"`
	} `json:"ipam"`
}

func parseConf(file string, list *libcni.NetworkConfigList) (*Conf, error) {
	c := &Conf{File: file, List: list, AttachmentsDir: registry.DefaultAttachmentsDir, IPAMDir: ipam.DefaultDataDir}
	for _, p := range list.Plugins {
		var f pluginFields
		if err := json.Unmarshal(p.Bytes, &f); err != nil {
			return nil, fmt.Errorf("%s: plugin %s: %w", file, p.Network.Type, err)
		}
		if f.AttachmentsDir != "" && filepath.IsAbs(f.AttachmentsDir) {
			c.AttachmentsDir = filepath.Clean(f.AttachmentsDir)
		}
		switch f.Type {
		case "bridge":
			c.Bridge = f.Bridge
			if c.Bridge == "" {
				c.Bridge = "cni0" // the reference's and berth's default
			}
			c.Masquerade = f.IPMasq
		case "firewall":
			c.FirewallType = f.Type
			c.IngressPolicy = f.IngressPolicy
			if c.IngressPolicy == "" {
				c.IngressPolicy = "open"
			}
		case "portmap":
			c.Portmap = true
			c.PortmapIPTables = f.Backend == "iptables"
		case "dnsname":
			dir := f.DataDir
			if dir == "" {
				dir = DefaultDNSDir
			}
			c.DNSDir = filepath.Join(dir, "registry")
			if f.Registry != nil {
				switch f.Registry.Backend {
				case "", registry.BackendFile:
					if f.Registry.Dir != "" {
						c.DNSDir = f.Registry.Dir
					}
				default:
					c.DNSDir = "" // etcd: not read by this tool
				}
			}
		}
		if f.IPAM != nil && f.IPAM.Type != "" && c.IPAMType == "" {
			c.IPAMType = f.IPAM.Type
			if f.IPAM.DataDir != "" {
				c.IPAMDir = f.IPAM.DataDir
			}
			if f.IPAM.Subnet != "" {
				c.Ranges = append(c.Ranges, f.IPAM.RangeConf)
			}
			for _, set := range f.IPAM.Ranges {
				c.Ranges = append(c.Ranges, set...)
			}
		}
	}
	return c, nil
}

// singleToList up-converts a single-plugin config to a list of one, as
// libcni does for .conf files (its ConfListFromConf, deprecated with the
// format but still what LoadNetworkConf falls back on).
func singleToList(b []byte) (*libcni.NetworkConfigList, error) {
	one, err := libcni.NetworkPluginConfFromBytes(b)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	list, err := json.Marshal(map[string]any{
		"cniVersion": one.Network.CNIVersion, "name": one.Network.Name, "plugins": []any{raw},
	})
	if err != nil {
		return nil, err
	}
	return libcni.NetworkConfFromBytes(list)
}

// Published reads the published ports of both backends: nftables always,
// iptables when one of confs has portmap on it (each read is iptables
// processes, skipped otherwise).
func Published(confs []*Conf) ([]firewall.Published, error) {
	pubs, err := firewall.ListPublished()
	if err != nil {
		return nil, err
	}
	for _, c := range confs {
		if c.PortmapIPTables {
			ipt, err := firewall.ListPublishedIPTables()
			if err != nil {
				return pubs, fmt.Errorf("iptables: %w", err)
			}
			return append(pubs, ipt...), nil
		}
	}
	return pubs, nil
}
