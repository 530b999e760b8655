package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
)

// Subnets are the automatic subnets chosen for networks with
// "subnet": "auto", kept in <dataDir>/.berth/subnets.json under an flock on
// <dataDir>/.berth/subnets.lock.
//
// A network keeps its subnet while it holds at least one reservation: the
// choice is made by the first ADD and released by the DEL or GC that removes
// the network's last reservation (or by a failed first ADD), so a network
// that is idle with no container may get another subnet next time, when the
// host's routes may have changed. Lock order: subnets, then the network's
// store.
type Subnets struct {
	path   string
	tmpDir string // temporary files of path, swept under the lock
	lock   *os.File
	chosen map[string]map[string]netip.Prefix // network -> range key -> subnet
	dirty  bool
}

// OpenSubnets locks and loads the automatic subnet registry of dataDir.
func OpenSubnets(dataDir string) (*Subnets, error) {
	meta := filepath.Join(dataDir, metaDirName)
	if err := os.MkdirAll(meta, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", meta, err)
	}
	lock, err := lockFile(filepath.Join(meta, "subnets.lock"))
	if err != nil {
		return nil, err
	}
	s := &Subnets{path: filepath.Join(meta, "subnets.json"), tmpDir: filepath.Join(meta, "subnets.tmp"), lock: lock, chosen: map[string]map[string]netip.Prefix{}}
	// A writer killed before its rename left its temporary file here.
	if err := os.RemoveAll(s.tmpDir); err != nil {
		lock.Close()
		return nil, fmt.Errorf("sweeping %s: %w", s.tmpDir, err)
	}
	b, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("reading %s: %w", s.path, err)
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &s.chosen); err != nil {
			lock.Close()
			return nil, fmt.Errorf("parsing %s: %w", s.path, err)
		}
	}
	return s, nil
}

// Close saves changes and releases the lock.
func (s *Subnets) Close() error {
	var err error
	if s.dirty {
		var b []byte
		if b, err = json.MarshalIndent(s.chosen, "", "  "); err == nil {
			if err = os.MkdirAll(s.tmpDir, 0o700); err == nil {
				err = writeAtomic(s.tmpDir, s.path, b)
			}
		}
		if err != nil {
			err = fmt.Errorf("saving %s: %w", s.path, err)
		}
	}
	if cerr := s.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

// Get returns the subnet chosen for the network's range key.
func (s *Subnets) Get(network, key string) (netip.Prefix, bool) {
	p, ok := s.chosen[network][key]
	return p, ok
}

// Release forgets every subnet chosen for network.
func (s *Subnets) Release(network string) {
	if _, ok := s.chosen[network]; ok {
		delete(s.chosen, network)
		s.dirty = true
	}
}

// maxCandidates bounds the search in one pool (an IPv6 pool may hold 2^64
// subnets).
const maxCandidates = 1 << 16

// Choose picks the first subnet of pools overlapping none of avoid nor any
// subnet chosen for another network, and records it for (network, key).
func (s *Subnets) Choose(network, key string, pools []Pool, avoid []netip.Prefix) (netip.Prefix, error) {
	for n, keys := range s.chosen {
		for k, p := range keys {
			if n != network || k != key {
				avoid = append(avoid, p)
			}
		}
	}
	for _, pool := range pools {
		p := netip.PrefixFrom(pool.Base.Addr(), pool.Size)
		for i := 0; i < maxCandidates && pool.Base.Contains(p.Addr()); i++ {
			if !overlapsAny(p, avoid) {
				if s.chosen[network] == nil {
					s.chosen[network] = map[string]netip.Prefix{}
				}
				s.chosen[network][key] = p
				s.dirty = true
				return p, nil
			}
			next := lastAddr(p).Next()
			if !next.IsValid() {
				break
			}
			p = netip.PrefixFrom(next, pool.Size)
		}
	}
	var names []string
	for _, p := range pools {
		names = append(names, fmt.Sprintf("%s as /%ds", p.Base, p.Size))
	}
	sort.Strings(names)
	return netip.Prefix{}, cni.Errorf(cni.CodeAddressExhausted,
		"%s: no free subnet for network %q in subnet pools %v: every subnet overlaps a host route or address or another network", Plugin, network, names)
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// HostPrefixes lists the prefixes of every address and route (all tables,
// default routes excepted) in the calling thread's network namespace:
// what an automatic subnet must not overlap.
func HostPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	addrs, err := link.AddrList(nil, nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := toPrefix(a.IPNet.IP, a.IPNet.Mask); ok {
			out = append(out, p.Masked())
		}
	}
	routes, err := link.RouteListFiltered(nil, netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if p, ok := toPrefix(r.Dst.IP, r.Dst.Mask); ok && p.Bits() > 0 {
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

func toPrefix(ip []byte, mask []byte) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones := 0
	for _, b := range mask {
		for ; b&0x80 != 0; b <<= 1 {
			ones++
		}
	}
	if len(mask) == 16 && a.Is4() {
		ones -= 96
	}
	if ones < 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

// resolveAuto gives every "auto" range of c its subnet: the one recorded for
// the network, else a new one from the pools avoiding the host's routes and
// addresses, the network's explicit ranges and other networks' subnets.
func resolveAuto(c *Config, s *Subnets) error {
	var avoid []netip.Prefix
	hostListed := false
	for i := range c.RangeSets {
		for j := range c.RangeSets[i] {
			if r := &c.RangeSets[i][j]; !r.Auto {
				avoid = append(avoid, r.Subnet)
			}
		}
	}
	for i := range c.RangeSets {
		for j := range c.RangeSets[i] {
			r := &c.RangeSets[i][j]
			if !r.Auto {
				continue
			}
			key := fmt.Sprintf("%d.%d", i, j)
			p, ok := s.Get(c.Name, key)
			if !ok {
				if !hostListed {
					host, err := HostPrefixes()
					if err != nil {
						return cni.Errorf(cni.CodeKernel, "%s: choosing an automatic subnet: %v", Plugin, err)
					}
					avoid = append(avoid, host...)
					hostListed = true
				}
				var err error
				if p, err = s.Choose(c.Name, key, c.Pools, avoid); err != nil {
					return err
				}
			}
			avoid = append(avoid, p)
			r.Subnet, r.Auto = p, false
			r.fillDefaults()
		}
	}
	return c.Validate()
}
