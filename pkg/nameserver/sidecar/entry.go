package sidecar

import (
	"fmt"
	"net/netip"

	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/registry"
)

// FromEntry turns a registry entry into the network settings and record the
// sidecar serves. self is this host's name: an entry another host
// registered (etcd) is Remote.
func FromEntry(e *registry.Entry, self string) (nameserver.Network, nameserver.Record) {
	n := nameserver.Network{Name: e.Network, Domain: e.DNS.Domain, Internal: e.DNS.Internal}
	for _, u := range e.DNS.Upstreams {
		// Written by the plugin from a validated address; a bad one (a
		// hand-edited registry) is skipped rather than failing the network.
		if ap, err := netip.ParseAddrPort(u); err == nil {
			n.Upstreams = append(n.Upstreams, ap)
		}
	}
	return n, nameserver.Record{
		Key: registry.EntryName(e.ContainerID, e.IfName), Names: e.Names, Aliases: e.Aliases,
		Addrs: e.IPs, Gateways: e.Gateways,
		Remote: e.Host != "" && e.Host != self,
	}
}

// minPrefix4 and minPrefix6 are the shortest prefixes a remote entry's
// addresses may carry: a network's subnets decide who may ask the sidecar,
// so an entry claiming 10.0.0.5/0 would open it to every source.
const (
	minPrefix4 = 8
	minPrefix6 = 16
)

// CheckRemote vets an entry that the etcd watch of network delivered under
// key before it is served: another host wrote it, and what it claims
// decides who may ask and what they hear. It must be valid, belong to the
// watched network under its own key (not poison another network's names),
// and its addresses must carry subnet-sized prefixes.
func CheckRemote(e *registry.Entry, network, key string) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if e.Network != network {
		return fmt.Errorf("entry of network %q under network %q", e.Network, network)
	}
	if k := registry.EntryName(e.ContainerID, e.IfName); k != key {
		return fmt.Errorf("entry %s under key %s", k, key)
	}
	for _, p := range e.IPs {
		if !p.IsValid() || p.Addr().Unmap().Is4() && p.Bits() < minPrefix4 || !p.Addr().Unmap().Is4() && p.Bits() < minPrefix6 {
			return fmt.Errorf("address %v: prefix too short for a subnet", p)
		}
	}
	return nil
}
