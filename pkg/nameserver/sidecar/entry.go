package sidecar

import (
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
