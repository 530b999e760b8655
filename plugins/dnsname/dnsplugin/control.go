package dnsplugin

// Glue between the registry and the DNS sidecar (pkg/nameserver/sidecar):
// the plugin has the registry open, so it is the one that turns entries
// into DNS records and sends them; the sidecar opens no registry store (see
// the sidecar package).

import (
	"context"
	"fmt"
	"os"

	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/nameserver/sidecar"
	"github.com/berthnet/berth/pkg/registry"
)

// client returns the sidecar client for c's data directory; a sidecar it
// starts gets the whole of store.
func (c *NetConf) client(store registry.Store) *sidecar.Client {
	return &sidecar.Client{
		Config: sidecar.Config{DataDir: c.DataDir, LogFile: c.LogFile},
		Load:   func() ([]sidecar.Request, error) { return c.loadAll(store) },
	}
}

// watched is the registry config the sidecar watches for names of other
// hosts: etcd's; nil for local files, which only this host writes.
func (c *NetConf) watched() *registry.Config {
	if c.Registry.Backend != registry.BackendEtcd {
		return nil
	}
	return c.Registry
}

// put is the request that serves e.
func (c *NetConf) put(e *registry.Entry) sidecar.Request {
	req := sidecar.Put(sidecar.FromEntry(e, hostname()))
	req.Registry = c.watched()
	return req
}

// loadAll reads every network of the registry as replace requests.
func (c *NetConf) loadAll(store registry.Store) ([]sidecar.Request, error) {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	nets, err := store.Networks(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	reqs := make([]sidecar.Request, 0, len(nets))
	for _, n := range nets {
		req, err := c.loadNetwork(ctx, store, n)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, req)
	}
	return reqs, nil
}

// loadNetwork reads one network as a replace request (GC, and startup).
func (c *NetConf) loadNetwork(ctx context.Context, store registry.Store, network string) (sidecar.Request, error) {
	entries, err := store.List(ctx, network)
	if err != nil {
		return sidecar.Request{}, fmt.Errorf("listing network %s: %w", network, err)
	}
	n := nameserver.Network{Name: network}
	recs := make([]nameserver.Record, 0, len(entries))
	self := hostname()
	for _, e := range entries {
		var rec nameserver.Record
		n, rec = sidecar.FromEntry(e, self)
		recs = append(recs, rec)
	}
	req := sidecar.Replace(n, recs)
	// The watch needs the settings of the network being replaced; a
	// network of the same registry as this config's.
	req.Registry = c.watched()
	return req, nil
}

// hostname names this host in registry entries (Entry.Host).
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}
