package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/registry"
)

// Network is `berth network inspect`'s view of one network. The JSON field
// names are a stable interface for scripts.
type Network struct {
	Name            string       `json:"name"`
	File            string       `json:"file"`
	CNIVersion      string       `json:"cniVersion"`
	Driver          string       `json:"driver"`
	Plugins         []string     `json:"plugins"`
	Bridge          string       `json:"bridge,omitempty"`
	Subnets         []string     `json:"subnets"`
	Gateways        []string     `json:"gateways"`
	IPAM            IPAM         `json:"ipam"`
	Firewall        Firewall     `json:"firewall"`
	StateDirs       StateDirs    `json:"stateDirs"`
	Attachments     []Attachment `json:"attachments"`
	LiveAttachments int          `json:"liveAttachments"`
	// RegistryUnreadable: the attachments registry could not be read
	// (permissions): the attachments are unknown, not none.
	RegistryUnreadable bool            `json:"registryUnreadable,omitempty"`
	Warnings           []string        `json:"warnings,omitempty"`
	Config             json.RawMessage `json:"config"`
}

// IPAM is the network's address management: ranges and their usage.
type IPAM struct {
	Type         string        `json:"type"`
	Ranges       []Range       `json:"ranges"`
	Reservations []Reservation `json:"reservations"`
}

// Range is a configured range with its size and reserved count.
type Range struct {
	RangeConf
	Size string `json:"size"` // addresses the range can hand out (a decimal: IPv6 ranges are large)
	Used int    `json:"used"`
}

// Reservation is one reserved address of the IPAM store.
type Reservation struct {
	IP          string `json:"ip"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

// Firewall is the network's packet policy as its config chains it.
type Firewall struct {
	Masquerade    bool   `json:"masquerade"`
	IngressPolicy string `json:"ingressPolicy,omitempty"` // the firewall plugin's; "" without one
	Portmap       bool   `json:"portmap"`
}

// StateDirs are where this view was read from.
type StateDirs struct {
	Attachments string `json:"attachments"`
	IPAM        string `json:"ipam"`
	DNS         string `json:"dns,omitempty"`
}

// Attachment is one container interface on the network.
type Attachment struct {
	ContainerID string   `json:"containerID"`
	Name        string   `json:"name"`
	Names       []string `json:"names"`
	Aliases     []string `json:"aliases"`
	Netns       string   `json:"netns"`
	IfName      string   `json:"ifName"`
	IPs         []string `json:"ips"`
	MAC         string   `json:"mac"`
	HostVeth    string   `json:"hostVeth,omitempty"`
	JoinedTo    string   `json:"joinedTo,omitempty"`
	Ports       []Port   `json:"ports"`
	// State is "live", "stale" (its namespace or an interface is gone:
	// Reason says which) or "unknown" (the kernel could not be asked,
	// e.g. without privileges).
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// Port is one published port of an attachment.
type Port struct {
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP"`
	HostPort      int    `json:"hostPort"`
}

// String is `docker port`'s line: "80/tcp -> 0.0.0.0:3000".
func (p Port) String() string {
	return fmt.Sprintf("%d/%s -> %s", p.ContainerPort, p.Protocol, net.JoinHostPort(p.HostIP, fmt.Sprint(p.HostPort)))
}

// States of an attachment.
const (
	Live    = "live"
	Stale   = "stale"
	Unknown = "unknown"
)

// Options locate the state. Empty directories mean the network's own
// config fields, then the plugins' defaults.
type Options struct {
	AttachmentsDir string
	IPAMDir        string
	DNSDir         string
	// NoKernel skips the kernel cross-check and the nftables read (every
	// attachment is then "unknown").
	NoKernel bool
}

func (o Options) dirs(c *Conf) StateDirs {
	d := StateDirs{Attachments: c.AttachmentsDir, IPAM: c.IPAMDir, DNS: c.DNSDir}
	if o.AttachmentsDir != "" {
		d.Attachments = o.AttachmentsDir
	}
	if o.IPAMDir != "" {
		d.IPAM = o.IPAMDir
	}
	if o.DNSDir != "" && c.DNSDir != "" {
		d.DNS = o.DNSDir
	}
	return d
}

// Inspect builds the view of one network. Ports are read once per call
// from nftables (pass pubs from ListPublished to share one read across
// networks; nil reads them).
func Inspect(c *Conf, o Options, pubs []firewall.Published) (*Network, error) {
	dirs := o.dirs(c)
	n := &Network{
		Name: c.List.Name, File: c.File, CNIVersion: c.List.CNIVersion, Driver: c.Driver(),
		Plugins: c.Plugins(), Bridge: c.Bridge, StateDirs: dirs,
		Firewall:    Firewall{Masquerade: c.Masquerade, IngressPolicy: c.IngressPolicy, Portmap: c.Portmap},
		IPAM:        IPAM{Type: c.IPAMType, Ranges: []Range{}, Reservations: []Reservation{}},
		Subnets:     []string{},
		Gateways:    []string{},
		Attachments: []Attachment{},
		Config:      json.RawMessage(c.List.Bytes),
	}
	if !json.Valid(n.Config) {
		n.Config = nil
	}
	entries, err := ListEntries(dirs.Attachments, n.Name)
	if err != nil {
		n.RegistryUnreadable = true
		n.Warnings = append(n.Warnings, fmt.Sprintf("attachments not read: %v", err))
	}
	if err := n.readIPAM(c, dirs.IPAM, entries); err != nil {
		n.Warnings = append(n.Warnings, err.Error())
	}
	dns := map[string]*registry.Entry{}
	if dirs.DNS != "" {
		des, err := ListEntries(dirs.DNS, n.Name)
		if err != nil {
			n.Warnings = append(n.Warnings, err.Error())
		}
		for _, e := range des {
			dns[registry.EntryName(e.ContainerID, e.IfName)] = e
		}
	}
	if pubs == nil && !o.NoKernel && c.Portmap {
		if pubs, err = Published([]*Conf{c}); err != nil {
			n.Warnings = append(n.Warnings, fmt.Sprintf("published ports not read: %v", err))
		}
	}
	for _, e := range entries {
		a := attachmentOf(e, dns[registry.EntryName(e.ContainerID, e.IfName)], pubs)
		if o.NoKernel {
			a.State, a.Reason = Unknown, "kernel not checked"
		} else {
			var mac string
			a.State, a.Reason, mac = CheckKernel(e)
			if mac != "" {
				a.MAC = mac
			}
		}
		if a.State == Live {
			n.LiveAttachments++
		}
		n.Attachments = append(n.Attachments, a)
	}
	return n, nil
}

// ListEntries reads a network's entries of a registry directory without
// creating anything (read-only commands must not need write access).
func ListEntries(dir, network string) ([]*registry.Entry, error) {
	if fi, err := os.Stat(filepath.Join(dir, network)); err != nil || !fi.IsDir() {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("registry %s: %w", dir, err)
		}
		return nil, nil
	}
	f, err := registry.OpenFiles(dir)
	if err != nil {
		return nil, err
	}
	es, err := f.List(context.Background(), network)
	if err != nil {
		return nil, err
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].ContainerID != es[j].ContainerID {
			return es[i].ContainerID < es[j].ContainerID
		}
		return es[i].IfName < es[j].IfName
	})
	return es, nil
}

// DisplayName is the runtime's name of the container, else its short ID.
func DisplayName(e *registry.Entry) string {
	for _, n := range e.Names {
		if !strings.HasPrefix(e.ContainerID, n) {
			return n
		}
	}
	if len(e.Names) > 0 {
		return e.Names[0]
	}
	if len(e.ContainerID) > 12 {
		return e.ContainerID[:12]
	}
	return e.ContainerID
}

func attachmentOf(e, dns *registry.Entry, pubs []firewall.Published) Attachment {
	a := Attachment{
		ContainerID: e.ContainerID, Name: DisplayName(e), Names: append([]string{}, e.Names...),
		Aliases: []string{}, Netns: e.Netns, IfName: e.IfName, IPs: []string{}, MAC: e.MAC,
		HostVeth: e.HostIf, JoinedTo: e.JoinedTo, Ports: []Port{},
	}
	for _, p := range e.IPs {
		a.IPs = append(a.IPs, p.String())
	}
	if dns != nil {
		for _, n := range dns.Names {
			if !contains(a.Names, n) {
				a.Names = append(a.Names, n)
			}
		}
		a.Aliases = append(a.Aliases, dns.Aliases...)
	}
	a.Ports = PortsOf(pubs, e.Network, e.ContainerID, e.IfName)
	return a
}

// PortsOf are the attachment's published ports, sorted by container port,
// protocol, host address.
func PortsOf(pubs []firewall.Published, network, id, ifname string) []Port {
	out := []Port{}
	for _, p := range pubs {
		if !p.OwnedBy(network, id, ifname) {
			continue
		}
		host := "0.0.0.0"
		if p.ContainerIP.To4() == nil {
			host = "::"
		}
		if len(p.HostIP) > 0 {
			host = p.HostIP.String()
		}
		out = append(out, Port{ContainerPort: p.ContainerPort, Protocol: p.Protocol, HostIP: host, HostPort: p.HostPort})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ContainerPort != b.ContainerPort {
			return a.ContainerPort < b.ContainerPort
		}
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		return a.HostIP < b.HostIP
	})
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// readIPAM fills the ranges (auto subnets resolved from the store's
// choices), subnets, gateways and the reservations, read without the
// store's lock (a reader sees whole files: they are written atomically).
func (n *Network) readIPAM(c *Conf, dir string, entries []*registry.Entry) error {
	// pkg/ipam keys a network's choices by range; in key order they fill
	// the config's auto ranges in order.
	chosen := readChosenSubnets(dir)[n.Name]
	keys := make([]string, 0, len(chosen))
	for k := range chosen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, rc := range c.Ranges {
		if rc.Subnet == "auto" && len(keys) > 0 {
			rc.Subnet, keys = chosen[keys[0]], keys[1:]
		}
		r := Range{RangeConf: rc}
		if p, err := netip.ParsePrefix(rc.Subnet); err == nil {
			r.Size = rangeSize(p, rc).String()
			if r.Gateway == "" && c.Driver() == "bridge" {
				r.Gateway = p.Masked().Addr().Next().String()
			}
		}
		n.IPAM.Ranges = append(n.IPAM.Ranges, r)
		if rc.Subnet != "" {
			n.Subnets = append(n.Subnets, rc.Subnet)
		}
		if r.Gateway != "" {
			n.Gateways = append(n.Gateways, r.Gateway)
		}
	}
	// Without ranges in the config (another IPAM), the attachments say
	// what the subnets and gateways are.
	if len(c.Ranges) == 0 {
		for _, e := range entries {
			for _, p := range e.IPs {
				if s := p.Masked().String(); !contains(n.Subnets, s) {
					n.Subnets = append(n.Subnets, s)
				}
			}
			for _, g := range e.Gateways {
				if s := g.String(); !contains(n.Gateways, s) {
					n.Gateways = append(n.Gateways, s)
				}
			}
		}
	}
	des, err := os.ReadDir(filepath.Join(dir, n.Name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ipam store: %w", err)
	}
	for _, de := range des {
		a, err := netip.ParseAddr(de.Name())
		if err != nil {
			continue // lock, last_reserved_ip.N
		}
		b, err := os.ReadFile(filepath.Join(dir, n.Name, de.Name()))
		if err != nil {
			continue
		}
		id, ifname, _ := strings.Cut(strings.TrimSpace(string(b)), "\r\n")
		n.IPAM.Reservations = append(n.IPAM.Reservations, Reservation{IP: a.String(), ContainerID: strings.TrimSpace(id), IfName: strings.TrimSpace(ifname)})
		for i := range n.IPAM.Ranges {
			if p, err := netip.ParsePrefix(n.IPAM.Ranges[i].Subnet); err == nil && p.Contains(a) {
				n.IPAM.Ranges[i].Used++
				break
			}
		}
	}
	sort.Slice(n.IPAM.Reservations, func(i, j int) bool {
		a, _ := netip.ParseAddr(n.IPAM.Reservations[i].IP)
		b, _ := netip.ParseAddr(n.IPAM.Reservations[j].IP)
		return a.Less(b)
	})
	return nil
}

// readChosenSubnets reads pkg/ipam's auto-subnet choices
// (<dataDir>/.berth/subnets.json: network -> range key -> prefix).
func readChosenSubnets(dir string) map[string]map[string]string {
	out := map[string]map[string]string{}
	b, err := os.ReadFile(filepath.Join(dir, ".berth", "subnets.json"))
	if err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

// rangeSize is the number of addresses a range hands out: rangeStart to
// rangeEnd when given, else the subnet without its network address, its
// IPv4 broadcast and the gateway.
func rangeSize(p netip.Prefix, rc RangeConf) *big.Int {
	p = p.Masked()
	first := p.Addr().Next()
	last := lastAddr(p)
	if p.Addr().Is4() {
		last = prev(last)
	}
	if a, err := netip.ParseAddr(rc.RangeStart); err == nil {
		first = a
	}
	if a, err := netip.ParseAddr(rc.RangeEnd); err == nil {
		last = a
	}
	size := new(big.Int).Sub(new(big.Int).SetBytes(last.AsSlice()), new(big.Int).SetBytes(first.AsSlice()))
	size.Add(size, big.NewInt(1))
	if g, err := netip.ParseAddr(rc.Gateway); (err == nil && g.Compare(first) >= 0 && g.Compare(last) <= 0) ||
		(rc.Gateway == "" && rc.RangeStart == "") {
		size.Sub(size, big.NewInt(1))
	}
	if size.Sign() < 0 {
		size.SetInt64(0)
	}
	return size
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func prev(a netip.Addr) netip.Addr {
	if p := a.Prev(); p.IsValid() {
		return p
	}
	return a
}

// Orphans are the networks that have entries in the attachments
// registries dirs but no config among known (its conflist was removed
// while containers were attached): their attachments are shown, but no
// DEL can be run for them without the config.
func Orphans(dirs []string, known map[string]bool, o Options, pubs []firewall.Published) []*Network {
	var out []*Network
	seen := map[string]bool{}
	for _, dir := range dirs {
		des, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, de := range des {
			name := de.Name()
			if !de.IsDir() || known[name] || seen[name] || registry.SafeNetwork(name) != nil {
				continue
			}
			entries, err := ListEntries(dir, name)
			if err != nil || len(entries) == 0 {
				continue
			}
			seen[name] = true
			n := &Network{Name: name, Plugins: []string{}, Subnets: []string{}, Gateways: []string{},
				IPAM: IPAM{Ranges: []Range{}, Reservations: []Reservation{}}, Attachments: []Attachment{},
				StateDirs: StateDirs{Attachments: dir},
				Warnings:  []string{"no config for this network: its attachments cannot be DELed by berth"}}
			for _, e := range entries {
				a := attachmentOf(e, nil, pubs)
				if o.NoKernel {
					a.State, a.Reason = Unknown, "kernel not checked"
				} else {
					var mac string
					if a.State, a.Reason, mac = CheckKernel(e); mac != "" {
						a.MAC = mac
					}
				}
				if a.State == Live {
					n.LiveAttachments++
				}
				for _, p := range e.IPs {
					if s := p.Masked().String(); !contains(n.Subnets, s) {
						n.Subnets = append(n.Subnets, s)
					}
				}
				n.Attachments = append(n.Attachments, a)
			}
			out = append(out, n)
		}
	}
	return out
}
