// Package ipam is berth's host-local IP address management: config parsing
// and validation with the reference host-local's fields, an on-disk store in
// the reference layout (<dataDir>/<network>/<ip>, last_reserved_ip.<n>, a
// flock'd "lock" file) so reference and berth binaries can share a node, a
// round-robin allocator, and pools for automatic ("auto") subnets.
package ipam

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
)

// Plugin is the name errors start with.
const Plugin = "host-local"

// DefaultDataDir is the reference host-local's store location.
const DefaultDataDir = "/var/lib/cni/networks"

// AutoSubnet is the subnet value asking for a subnet picked from the pools.
const AutoSubnet = "auto"

// Range is one contiguous range of addresses inside a subnet.
type Range struct {
	Subnet  netip.Prefix
	Start   netip.Addr // inclusive
	End     netip.Addr // inclusive
	Gateway netip.Addr // invalid when the range has none (/31, /32, /127, /128)
	// Auto: the subnet is chosen from the subnet pools at ADD time; Subnet,
	// Start, End and Gateway are only valid after resolution.
	Auto bool
	// Field is the range's place in the config, for error messages
	// ("ranges[0][1]").
	Field string
}

// Contains reports whether a is inside the range (start and end included).
func (r *Range) Contains(a netip.Addr) bool {
	return r.Subnet.Contains(a) && r.Start.Compare(a) <= 0 && a.Compare(r.End) <= 0
}

func (r *Range) String() string {
	return fmt.Sprintf("%s (range %s-%s)", r.Subnet, r.Start, r.End)
}

// RangeSet is a list of ranges of one address family; an attachment gets one
// address per range set.
type RangeSet []Range

// RangeFor returns the range containing a, or nil.
func (s RangeSet) RangeFor(a netip.Addr) *Range {
	for i := range s {
		if s[i].Contains(a) {
			return &s[i]
		}
	}
	return nil
}

func (s RangeSet) String() string {
	parts := make([]string, len(s))
	for i := range s {
		parts[i] = s[i].String()
	}
	return strings.Join(parts, ", ")
}

// Pool is a base prefix carved into subnets of Size bits for "auto" ranges.
type Pool struct {
	Base netip.Prefix
	Size int
}

// DefaultPools are Docker's default local address pools.
func DefaultPools() []Pool {
	var p []Pool
	for i := 17; i <= 31; i++ {
		p = append(p, Pool{Base: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16), Size: 16})
	}
	return append(p, Pool{Base: netip.MustParsePrefix("192.168.0.0/16"), Size: 20})
}

// Requested is an address the runtime asked for, with where it came from.
type Requested struct {
	Addr   netip.Addr
	Source string
}

// Config is a validated host-local configuration.
type Config struct {
	Name       string
	CNIVersion string
	DataDir    string
	ResolvConf string
	RangeSets  []RangeSet
	Routes     []*types.Route
	Requested  []Requested
	Pools      []Pool
}

// HasAuto reports whether any range asks for an automatic subnet.
func (c *Config) HasAuto() bool {
	for _, s := range c.RangeSets {
		for _, r := range s {
			if r.Auto {
				return true
			}
		}
	}
	return false
}

type rangeConf struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
}

type routeConf struct {
	Dst      string `json:"dst"`
	GW       string `json:"gw,omitempty"`
	MTU      int    `json:"mtu,omitempty"`
	AdvMSS   int    `json:"advmss,omitempty"`
	Priority int    `json:"priority,omitempty"`
	Table    *int   `json:"table,omitempty"`
	Scope    *int   `json:"scope,omitempty"`
}

type poolConf struct {
	Base string `json:"base"`
	Size int    `json:"size"`
}

type ipamConf struct {
	Type string `json:"type"`
	rangeConf
	Ranges      [][]rangeConf `json:"ranges"`
	Routes      []routeConf   `json:"routes"`
	DataDir     string        `json:"dataDir"`
	ResolvConf  string        `json:"resolvConf"`
	SubnetPools []poolConf    `json:"subnetPools"`
}

type netConf struct {
	CNIVersion    string    `json:"cniVersion"`
	Name          string    `json:"name"`
	IPAM          *ipamConf `json:"ipam"`
	RuntimeConfig struct {
		IPs      []string      `json:"ips"`
		IPRanges [][]rangeConf `json:"ipRanges"`
	} `json:"runtimeConfig"`
	Args *struct {
		CNI *struct {
			IPs []string `json:"ips"`
		} `json:"cni"`
	} `json:"args"`
}

// Parse decodes and validates a host-local config (the whole network config
// on stdin) and the CNI_ARGS string. Errors are *types.Error: code 6 for
// undecodable JSON, 7 for invalid values, naming the field and the value.
func Parse(stdin []byte, envArgs string) (*Config, error) {
	var n netConf
	if err := cni.Decode(Plugin, stdin, &n); err != nil {
		return nil, err
	}
	if n.IPAM == nil {
		return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: ipam: missing", Plugin)
	}
	if err := cni.SafeName("name", n.Name); err != nil {
		return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: %v", Plugin, err)
	}
	// .berth* names are reserved for berth's own metadata next to the
	// network directories (see Store).
	if strings.HasPrefix(n.Name, metaDirName) {
		return nil, cni.InvalidField(Plugin, "name", n.Name, "names starting with "+metaDirName+" are reserved")
	}
	c := &Config{Name: n.Name, CNIVersion: n.CNIVersion, DataDir: n.IPAM.DataDir, ResolvConf: n.IPAM.ResolvConf}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}

	// Same order as the reference, which matters for last_reserved_ip.<n>:
	// runtimeConfig.ipRanges, then the legacy single range, then ranges.
	type rawSet struct {
		field string
		set   []rangeConf
	}
	var raw []rawSet
	for i, s := range n.RuntimeConfig.IPRanges {
		raw = append(raw, rawSet{fmt.Sprintf("runtimeConfig.ipRanges[%d]", i), s})
	}
	if n.IPAM.Subnet != "" {
		raw = append(raw, rawSet{"", []rangeConf{n.IPAM.rangeConf}})
	} else if n.IPAM.RangeStart != "" || n.IPAM.RangeEnd != "" || n.IPAM.Gateway != "" {
		return nil, cni.InvalidField(Plugin, "subnet", `""`, "rangeStart, rangeEnd or gateway given without subnet")
	}
	for i, s := range n.IPAM.Ranges {
		raw = append(raw, rawSet{fmt.Sprintf("ranges[%d]", i), s})
	}
	if len(raw) == 0 {
		return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: ranges: no IP ranges specified (set ipam.ranges or ipam.subnet)", Plugin)
	}
	for _, rs := range raw {
		if len(rs.set) == 0 {
			return nil, cni.InvalidField(Plugin, rs.field, "[]", "empty range set")
		}
		set := make(RangeSet, 0, len(rs.set))
		for j, rc := range rs.set {
			field := fmt.Sprintf("%s[%d]", rs.field, j)
			if rs.field == "" {
				field = "" // legacy: fields live at ipam level
			}
			r, err := parseRange(field, rc)
			if err != nil {
				return nil, err
			}
			set = append(set, r)
		}
		c.RangeSets = append(c.RangeSets, set)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}

	for i, rc := range n.IPAM.Routes {
		r, err := parseRoute(fmt.Sprintf("routes[%d]", i), rc)
		if err != nil {
			return nil, err
		}
		c.Routes = append(c.Routes, r)
	}
	for i, pc := range n.IPAM.SubnetPools {
		p, err := parsePool(fmt.Sprintf("subnetPools[%d]", i), pc)
		if err != nil {
			return nil, err
		}
		c.Pools = append(c.Pools, p)
	}
	if len(c.Pools) == 0 {
		c.Pools = DefaultPools()
	}

	req, err := parseRequested(n, envArgs)
	if err != nil {
		return nil, err
	}
	c.Requested = req
	return c, nil
}

func dotted(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func parseRange(field string, rc rangeConf) (Range, error) {
	r := Range{Field: field}
	if rc.Subnet == AutoSubnet {
		for name, v := range map[string]string{"rangeStart": rc.RangeStart, "rangeEnd": rc.RangeEnd, "gateway": rc.Gateway} {
			if v != "" {
				return r, cni.InvalidField(Plugin, dotted(field, name), v, `cannot be set with "subnet": "auto"`)
			}
		}
		r.Auto = true
		return r, nil
	}
	sf := dotted(field, "subnet")
	if rc.Subnet == "" {
		return r, cni.InvalidField(Plugin, sf, `""`, "missing")
	}
	p, err := netip.ParsePrefix(rc.Subnet)
	if err != nil {
		return r, cni.InvalidField(Plugin, sf, rc.Subnet, "invalid CIDR")
	}
	if p.Addr().Zone() != "" {
		return r, cni.InvalidField(Plugin, sf, rc.Subnet, "zones are not allowed")
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr()))
	if p.Masked() != p {
		return r, cni.InvalidField(Plugin, sf, rc.Subnet, "host bits set (network address is "+p.Masked().Addr().String()+")")
	}
	r.Subnet = p
	parseIn := func(name, v string) (netip.Addr, error) {
		f := dotted(field, name)
		a, err := netip.ParseAddr(v)
		if err != nil {
			return a, cni.InvalidField(Plugin, f, v, "invalid IP address")
		}
		a = a.Unmap()
		if a.Is4() != p.Addr().Is4() {
			return a, cni.InvalidField(Plugin, f, v, "address family differs from subnet "+p.String())
		}
		if !p.Contains(a) {
			return a, cni.InvalidField(Plugin, f, v, "not in subnet "+p.String())
		}
		return a, nil
	}
	if rc.Gateway != "" {
		if r.Gateway, err = parseIn("gateway", rc.Gateway); err != nil {
			return r, err
		}
	}
	if rc.RangeStart != "" {
		if r.Start, err = parseIn("rangeStart", rc.RangeStart); err != nil {
			return r, err
		}
	}
	if rc.RangeEnd != "" {
		if r.End, err = parseIn("rangeEnd", rc.RangeEnd); err != nil {
			return r, err
		}
	}
	r.fillDefaults()
	if r.Start.Compare(r.End) > 0 {
		return r, cni.InvalidField(Plugin, dotted(field, "rangeStart"), r.Start, "after rangeEnd "+r.End.String())
	}
	if r.Start == r.End && r.Start == r.Gateway {
		return r, cni.InvalidField(Plugin, sf, rc.Subnet, "range holds only the gateway "+r.Gateway.String())
	}
	return r, nil
}

// unmapBits is 96 for an IPv4-mapped IPv6 prefix, so ::ffff:10.0.0.0/104
// becomes 10.0.0.0/8.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// fillDefaults sets the gateway (first address of the subnet, none for
// point-to-point and host prefixes), the start (the first address after the
// network address) and the end (the last address before the IPv4 broadcast
// address; the last address for IPv6), as the reference does.
func (r *Range) fillDefaults() {
	p := r.Subnet
	hostBits := p.Addr().BitLen() - p.Bits()
	first := p.Addr()
	last := lastAddr(p)
	if hostBits >= 2 {
		first = first.Next()
		if p.Addr().Is4() {
			last = last.Prev()
		}
		if !r.Gateway.IsValid() {
			r.Gateway = p.Addr().Next()
		}
	}
	if !r.Start.IsValid() {
		r.Start = first
	}
	if !r.End.IsValid() {
		r.End = last
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		keep := p.Bits() - i*8
		switch {
		case keep <= 0:
			b[i] = 0xff
		case keep < 8:
			b[i] |= 0xff >> keep
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func rangesOverlap(a, b *Range) bool {
	if a.Start.Is4() != b.Start.Is4() {
		return false
	}
	return a.Start.Compare(b.End) <= 0 && b.Start.Compare(a.End) <= 0
}

func rangeName(r *Range, fallback string) string {
	if r.Field != "" {
		return r.Field
	}
	return fallback
}

// Validate checks families and overlaps once every range is resolved
// (ranges with an unresolved "auto" subnet are skipped).
func (c *Config) Validate() error {
	for i, s := range c.RangeSets {
		fam := 0
		for j := range s {
			r := &s[j]
			if r.Auto {
				continue
			}
			f := 4
			if !r.Subnet.Addr().Is4() {
				f = 6
			}
			if fam != 0 && f != fam {
				return cni.InvalidField(Plugin, dotted(rangeName(r, "ipam"), "subnet"), r.Subnet, fmt.Sprintf("IPv%d in a range set of IPv%d ranges", f, fam))
			}
			fam = f
			for k := 0; k < j; k++ {
				if o := &s[k]; !o.Auto && rangesOverlap(r, o) {
					return cni.InvalidField(Plugin, dotted(rangeName(r, "ipam"), "subnet"), r.Subnet, fmt.Sprintf("overlaps %s %s", rangeName(o, "ipam"), o.Subnet))
				}
			}
		}
		for k := 0; k < i; k++ {
			for _, r := range s {
				for _, o := range c.RangeSets[k] {
					if !r.Auto && !o.Auto && rangesOverlap(&r, &o) {
						return cni.InvalidField(Plugin, dotted(rangeName(&r, "ipam"), "subnet"), r.Subnet,
							fmt.Sprintf("range set %d overlaps range set %d (%s)", i, k, o.Subnet))
					}
				}
			}
		}
	}
	return nil
}

func parseRoute(field string, rc routeConf) (*types.Route, error) {
	p, err := netip.ParsePrefix(rc.Dst)
	if err != nil {
		return nil, cni.InvalidField(Plugin, field+".dst", fmt.Sprintf("%q", rc.Dst), "invalid CIDR")
	}
	r := &types.Route{
		Dst: net.IPNet{IP: p.Masked().Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		MTU: rc.MTU, AdvMSS: rc.AdvMSS, Priority: rc.Priority, Table: rc.Table, Scope: rc.Scope,
	}
	if rc.GW != "" {
		gw, err := netip.ParseAddr(rc.GW)
		if err != nil {
			return nil, cni.InvalidField(Plugin, field+".gw", rc.GW, "invalid IP address")
		}
		if gw.Unmap().Is4() != p.Addr().Is4() {
			return nil, cni.InvalidField(Plugin, field+".gw", rc.GW, "address family differs from dst "+rc.Dst)
		}
		r.GW = gw.Unmap().AsSlice()
	}
	return r, nil
}

func parsePool(field string, pc poolConf) (Pool, error) {
	b, err := netip.ParsePrefix(pc.Base)
	if err != nil {
		return Pool{}, cni.InvalidField(Plugin, field+".base", fmt.Sprintf("%q", pc.Base), "invalid CIDR")
	}
	if b.Masked() != b {
		return Pool{}, cni.InvalidField(Plugin, field+".base", pc.Base, "host bits set")
	}
	if pc.Size < b.Bits() || pc.Size > b.Addr().BitLen()-2 {
		return Pool{}, cni.InvalidField(Plugin, field+".size", pc.Size, fmt.Sprintf("must be between %d and %d", b.Bits(), b.Addr().BitLen()-2))
	}
	return Pool{Base: b, Size: pc.Size}, nil
}

// parseRequested collects requested addresses from CNI_ARGS (IP=a,b),
// args.cni.ips and runtimeConfig.ips. Each may be an address or an address
// with a prefix length (the reference accepts both).
func parseRequested(n netConf, envArgs string) ([]Requested, error) {
	var out []Requested
	add := func(source, v string) error {
		s := v
		if i := strings.IndexByte(s, '/'); i >= 0 {
			s = s[:i]
		}
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return cni.InvalidField(Plugin, source, v, "invalid IP address")
		}
		out = append(out, Requested{Addr: a.Unmap(), Source: source})
		return nil
	}
	for _, kv := range strings.Split(envArgs, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k != "IP" {
			continue // other keys (K8S_POD_NAME, IgnoreUnknown...) are not ours
		}
		for i, ip := range strings.Split(v, ",") {
			if err := add(fmt.Sprintf("CNI_ARGS IP[%d]", i), ip); err != nil {
				return nil, err
			}
		}
	}
	if n.Args != nil && n.Args.CNI != nil {
		for i, ip := range n.Args.CNI.IPs {
			if err := add(fmt.Sprintf("args.cni.ips[%d]", i), ip); err != nil {
				return nil, err
			}
		}
	}
	for i, ip := range n.RuntimeConfig.IPs {
		if err := add(fmt.Sprintf("runtimeConfig.ips[%d]", i), ip); err != nil {
			return nil, err
		}
	}
	return out, nil
}
