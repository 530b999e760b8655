package main

// Glue between the registry and the DNS sidecar (pkg/dns/sidecar): the
// plugin has the registry open, so it is the one that turns entries into
// DNS records and sends them; the sidecar, a lean binary of its own, links
// no registry backend (see the sidecar package for why).

import (
	"context"
	"fmt"

	bdns "github.com/berthnet/berth/pkg/dns"
	"github.com/berthnet/berth/pkg/dns/sidecar"
	"github.com/berthnet/berth/pkg/registry"
)

// client returns the sidecar client for c's data directory; a sidecar it
// starts gets the whole of store.
func (c *Config) client(store registry.Store) *sidecar.Client {
	return &sidecar.Client{
		Config: sidecar.Config{DataDir: c.DataDir, LogFile: c.LogFile},
		Load:   func() ([]sidecar.Request, error) { return loadAll(store) },
	}
}

// loadAll reads every network of the registry as replace requests.
func loadAll(store registry.Store) ([]sidecar.Request, error) {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	nets, err := store.Networks(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	reqs := make([]sidecar.Request, 0, len(nets))
	for _, n := range nets {
		req, err := loadNetwork(ctx, store, n)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, req)
	}
	return reqs, nil
}

// loadNetwork reads one network as a replace request (GC, and startup).
func loadNetwork(ctx context.Context, store registry.Store, network string) (sidecar.Request, error) {
	entries, err := store.List(ctx, network)
	if err != nil {
		return sidecar.Request{}, fmt.Errorf("listing network %s: %w", network, err)
	}
	n := bdns.Network{Name: network}
	recs := make([]bdns.Record, 0, len(entries))
	for _, e := range entries {
		var rec bdns.Record
		n, rec = fromEntry(e)
		recs = append(recs, rec)
	}
	return sidecar.Replace(n, recs), nil
}

func entryKey(containerID, ifName string) string { return containerID + "@" + ifName }

func fromEntry(e *registry.Entry) (bdns.Network, bdns.Record) {
	n := bdns.Network{Name: e.Network, Domain: e.DNS.Domain, Internal: e.DNS.Internal}
	for _, u := range e.DNS.Upstreams {
		if ap, err := parseUpstream(u); err == nil {
			n.Upstreams = append(n.Upstreams, ap)
		}
	}
	return n, bdns.Record{
		Key: entryKey(e.ContainerID, e.IfName), Names: e.Names, Aliases: e.Aliases,
		Addrs: e.IPs, Gateways: e.Gateways,
	}
}
