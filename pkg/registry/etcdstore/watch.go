package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berthnet/berth/pkg/registry"
)

// Event is one change of an entry of a watched network.
type Event struct {
	// Revision is the etcd revision of the change.
	Revision int64
	// Key is the attachment's registry.EntryName (containerID@ifname).
	Key string
	// Entry is the new value; nil for a deletion.
	Entry *registry.Entry
}

func (s *Etcd) networkPrefix(network string) string { return s.prefix + network + "/" }

// Snapshot returns network's entries and the etcd revision they are at,
// from which Watch follows.
func (s *Etcd) Snapshot(ctx context.Context, network string) ([]*registry.Entry, int64, error) {
	if err := registry.SafeNetwork(network); err != nil {
		return nil, 0, err
	}
	resp, err := s.cli.Get(ctx, s.networkPrefix(network), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("registry: etcd range %s: %w", network, err)
	}
	out := make([]*registry.Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var e registry.Entry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, 0, fmt.Errorf("registry: etcd %s: %w", kv.Key, err)
		}
		out = append(out, &e)
	}
	return out, resp.Header.Revision, nil
}

// Watch calls fn for every change of network's entries after revision rev,
// in order, until ctx ends (nil) or etcd cancels the watch (an error: a
// compaction passed rev, or the cluster lost its leader; the caller takes a
// new Snapshot and watches again). The client reconnects by itself while
// an endpoint is away, resuming after the last revision delivered.
func (s *Etcd) Watch(ctx context.Context, network string, rev int64, fn func(Event)) error {
	if err := registry.SafeNetwork(network); err != nil {
		return err
	}
	prefix := s.networkPrefix(network)
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel() // ends the watch stream
	for resp := range s.cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := resp.Err(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("registry: etcd watch %s: %w", network, err)
		}
		for _, ev := range resp.Events {
			out := Event{Revision: ev.Kv.ModRevision, Key: strings.TrimPrefix(string(ev.Kv.Key), prefix)}
			if ev.Type == clientv3.EventTypePut {
				var e registry.Entry
				if err := json.Unmarshal(ev.Kv.Value, &e); err != nil {
					return fmt.Errorf("registry: etcd watch %s: %s: %w", network, ev.Kv.Key, err)
				}
				out.Entry = &e
			}
			fn(out)
		}
	}
	// The channel closes when ctx ends, or when the client is closed.
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("registry: etcd watch %s: closed", network)
}
