package ipam

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthnet/berth/pkg/cni"
)

// Add reserves one address per range set for (id, ifname) and returns the
// result. It is idempotent: an attachment that already holds an address in
// a range set gets that address again. On failure nothing it reserved is
// left behind, and the round-robin positions are restored.
func Add(c *Config, id, ifname string) (*current.Result, error) {
	res, _, err := Reserve(c, id, ifname)
	return res, err
}

// Reserve is Add that also reports whether it reserved anything new. A
// caller undoing a failed ADD releases only what it reserved: addresses the
// attachment already held belong to an earlier ADD that may be live (a
// runtime retrying after a timeout).
func Reserve(c *Config, id, ifname string) (res *current.Result, fresh bool, err error) {
	auto := c.HasAuto()
	var subnets *Subnets
	if auto {
		if subnets, err = OpenSubnets(c.DataDir); err != nil {
			return nil, false, cni.Wrap(cni.CodeIOFailure, err, "%s: subnet pools", Plugin)
		}
		defer func() {
			if cerr := subnets.Close(); cerr != nil && err == nil {
				res, fresh, err = nil, false, ioErr(cerr)
			}
		}()
		if err := resolveAuto(c, subnets); err != nil {
			if s, oerr := Open(c.DataDir, c.Name, false); oerr == nil {
				if empty, err := s.Empty(); err == nil && empty {
					subnets.Release(c.Name)
				}
				_ = s.Close()
			} else if errors.Is(oerr, ErrNoStore) {
				subnets.Release(c.Name)
			}
			return nil, false, err
		}
	}

	// Requested addresses, one per range set at most.
	want := make([]*Requested, len(c.RangeSets))
	for i := range c.Requested {
		rq := &c.Requested[i]
		found := false
		for si, set := range c.RangeSets {
			r := set.RangeFor(rq.Addr)
			if r == nil {
				continue
			}
			if rq.Addr == r.Gateway {
				return nil, false, cni.InvalidField(Plugin, rq.Source, rq.Addr, "is the gateway of "+r.Subnet.String())
			}
			if want[si] != nil {
				return nil, false, cni.InvalidField(Plugin, rq.Source, rq.Addr, fmt.Sprintf("%s (%s) already asks for an address in range set %d", want[si].Source, want[si].Addr, si))
			}
			want[si], found = rq, true
			break
		}
		if !found {
			return nil, false, cni.InvalidField(Plugin, rq.Source, rq.Addr, "not in any range")
		}
	}

	var dns types.DNS
	if c.ResolvConf != "" {
		d, err := ParseResolvConf(c.ResolvConf)
		if err != nil {
			return nil, false, cni.InvalidField(Plugin, "resolvConf", c.ResolvConf, err.Error())
		}
		dns = *d
	}

	store, err := Open(c.DataDir, c.Name, true)
	if err != nil {
		return nil, false, ioErr(err)
	}
	o := Owner{ID: id, IfName: ifname}
	var reserved []netip.Addr
	committed := false
	defer func() {
		if !committed {
			for _, a := range reserved {
				_ = store.Release(a, o)
			}
			_ = store.RestoreLast()
			if empty, err := store.Empty(); auto && err == nil && empty {
				subnets.Release(c.Name)
			}
		}
		if cerr := store.Close(); cerr != nil && err == nil {
			res, fresh, err = nil, false, ioErr(cerr)
		}
	}()

	held, err := store.ByOwner(id, ifname)
	if err != nil {
		return nil, false, ioErr(err)
	}
	res = &current.Result{CNIVersion: current.ImplementedSpecVersion}
	for si, set := range c.RangeSets {
		var addr netip.Addr
		var r *Range
		for _, h := range held {
			if r = set.RangeFor(h); r != nil {
				addr = h
				break
			}
		}
		switch {
		case addr.IsValid():
			if rq := want[si]; rq != nil && rq.Addr != addr {
				return nil, false, cni.Errorf(cni.CodeConflict, "%s: %s %s: attachment %s/%s already holds %s in range set %d", Plugin, rq.Source, rq.Addr, id, ifname, addr, si)
			}
		case want[si] != nil:
			rq := want[si]
			ok, err := store.Reserve(rq.Addr, o, si)
			if err != nil {
				return nil, false, ioErr(err)
			}
			if !ok {
				return nil, false, cni.Errorf(cni.CodeConflict, "%s: %s %s: address already in use", Plugin, rq.Source, rq.Addr)
			}
			addr, r = rq.Addr, set.RangeFor(rq.Addr)
			reserved = append(reserved, addr)
		default:
			addr, r, err = Allocate(store, set, si, o)
			if err != nil {
				return nil, false, ioErr(err)
			}
			reserved = append(reserved, addr)
		}
		ipc := &current.IPConfig{Address: net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(r.Subnet.Bits(), addr.BitLen())}}
		if r.Gateway.IsValid() {
			ipc.Gateway = r.Gateway.AsSlice()
		}
		res.IPs = append(res.IPs, ipc)
	}
	res.Routes = c.Routes
	res.DNS = dns
	committed = true
	return res, len(reserved) > 0, nil
}

// Del releases every reservation of (id, ifname). It succeeds when there is
// nothing to release, also when the network was never used.
func Del(c *Config, id, ifname string) error {
	return withStore(c, func(s *Store) error {
		_, err := s.ReleaseOwner(id, ifname)
		return err
	})
}

// GC releases every reservation whose attachment is not in valid. A legacy
// reservation (container ID only) is kept when any of the container's
// attachments is valid.
func GC(c *Config, valid map[cni.Attachment]bool) error {
	ids := map[string]bool{}
	for a := range valid {
		ids[a.ContainerID] = true
	}
	return withStore(c, func(s *Store) error {
		all, err := s.Scan()
		if err != nil {
			return err
		}
		var errs []error
		for a, o := range all {
			if o.Legacy && !ids[o.ID] || !o.Legacy && !valid[cni.Attachment{ContainerID: o.ID, IfName: o.IfName}] {
				errs = append(errs, s.Release(a, o))
			}
		}
		return errors.Join(errs...)
	})
}

// withStore runs release on the network's existing store (doing nothing
// when there is none) and gives back the network's automatic subnets once
// it holds no reservation.
func withStore(c *Config, release func(*Store) error) (err error) {
	var subnets *Subnets
	// Without <dataDir>/.berth no subnet was ever chosen there: leave the
	// disk untouched (a DEL before any ADD creates nothing).
	if _, serr := os.Stat(filepath.Join(c.DataDir, metaDirName)); c.HasAuto() && serr == nil {
		if subnets, err = OpenSubnets(c.DataDir); err != nil {
			return cni.Wrap(cni.CodeIOFailure, err, "%s: subnet pools", Plugin)
		}
		defer func() {
			if cerr := subnets.Close(); cerr != nil && err == nil {
				err = ioErr(cerr)
			}
		}()
	}
	store, err := Open(c.DataDir, c.Name, false)
	if errors.Is(err, ErrNoStore) {
		if subnets != nil {
			subnets.Release(c.Name)
		}
		return nil
	}
	if err != nil {
		return ioErr(err)
	}
	defer func() {
		if cerr := store.Close(); cerr != nil && err == nil {
			err = ioErr(cerr)
		}
	}()
	if err := release(store); err != nil {
		return ioErr(err)
	}
	if subnets != nil {
		if empty, err := store.Empty(); err == nil && empty {
			subnets.Release(c.Name)
		}
	}
	return nil
}

// Check verifies that (id, ifname) holds the addresses of prev (or, with no
// previous result, at least one address).
func Check(c *Config, id, ifname string, prev *current.Result) error {
	store, err := Open(c.DataDir, c.Name, false)
	if errors.Is(err, ErrNoStore) {
		return cni.Errorf(cni.CodeUnknownContainer, "%s: no reservation for %s/%s: network %s has no store", Plugin, id, ifname, c.Name)
	}
	if err != nil {
		return ioErr(err)
	}
	defer store.Close()
	held, err := store.ByOwner(id, ifname)
	if err != nil {
		return ioErr(err)
	}
	if prev == nil || len(prev.IPs) == 0 {
		if len(held) == 0 {
			return cni.Errorf(cni.CodeUnknownContainer, "%s: no reservation for %s/%s in network %s", Plugin, id, ifname, c.Name)
		}
		return nil
	}
	for _, ipc := range prev.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			return cni.Errorf(cni.CodeDecode, "%s: prevResult: bad address %v", Plugin, ipc.Address.IP)
		}
		a = a.Unmap()
		if o, ok := store.Owner(a); !ok || !o.Is(id, ifname) {
			return cni.Errorf(cni.CodeUnknownContainer, "%s: %s is not reserved for %s/%s in network %s", Plugin, a, id, ifname, c.Name)
		}
	}
	return nil
}

// Status reports whether the store can be used: code 50 when the network's
// directory cannot be created or written.
func Status(c *Config) error {
	dir := filepath.Join(c.DataDir, c.Name)
	fail := func(err error) error {
		return cni.Errorf(cni.CodePluginNotAvailable, "%s: store %s is not usable: %v", Plugin, dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".status-")
	if err != nil {
		return fail(err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(filepath.Join(c.DataDir, metaDirName, "index"), 0o700); err != nil {
		return fail(err)
	}
	return nil
}

// ParseResolvConf reads nameserver, domain, search and options lines of a
// resolv.conf file into a result's DNS.
func ParseResolvConf(path string) (*types.DNS, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dns := &types.DNS{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			dns.Nameservers = append(dns.Nameservers, fields[1])
		case "domain":
			dns.Domain = fields[1]
		case "search":
			dns.Search = append(dns.Search, fields[1:]...)
		case "options":
			dns.Options = append(dns.Options, fields[1:]...)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return dns, nil
}

// ioErr passes CNI errors through and makes anything else a code-5 error.
func ioErr(err error) error {
	var ce *types.Error
	if errors.As(err, &ce) {
		return ce
	}
	return cni.Errorf(cni.CodeIOFailure, "%s: %v", Plugin, err)
}
