package etcdwatch_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/etcdstore"
	"github.com/berthnet/berth/pkg/registry/etcdwatch"
	"github.com/berthnet/berth/pkg/registry/registrytest"
)

// TestEtcdWatch: what the clientv3 backend writes, the JSON-gateway watch
// reads back: a snapshot, then puts and deletes in order, and only the
// watched network's.
func TestWatch(t *testing.T) {
	ep := registrytest.StartEtcd(t)
	const prefix = "/watch-test/"
	s, err := etcdstore.Open([]string{ep}, prefix, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	put := func(network, id, ip string) {
		t.Helper()
		e := &registry.Entry{Network: network, ContainerID: id, IfName: "eth0", Names: []string{id}, IPs: []netip.Prefix{netip.MustParsePrefix(ip)}}
		if err := s.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	put("net1", "aaaa", "10.1.0.2/24")
	put("net2", "cccc", "10.2.0.2/24")

	w := &etcdwatch.Watch{Endpoints: []string{"http://127.0.0.1:1", ep}, Prefix: prefix, Network: "net1"}
	entries, rev, err := w.Snapshot(ctx)
	if err != nil {
		t.Fatalf("snapshot (first endpoint refuses, the second answers): %v", err)
	}
	if len(entries) != 1 || entries[0].ContainerID != "aaaa" || rev == 0 {
		t.Fatalf("snapshot: got %d entries at revision %d, want aaaa only", len(entries), rev)
	}
	events := make(chan etcdwatch.Event, 10)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Watch(wctx, rev, func(ev etcdwatch.Event) { events <- ev }) }()

	put("net2", "dddd", "10.2.0.3/24") // another network: not seen
	put("net1", "bbbb", "10.1.0.3/24")
	if err := s.Delete(ctx, "net1", "aaaa", "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		key string
		put bool
	}{{"bbbb@eth0", true}, {"aaaa@eth0", false}} {
		select {
		case ev := <-events:
			if ev.Key != want.key || (ev.Entry != nil) != want.put || ev.Revision <= rev {
				t.Fatalf("event: got key %q entry %v revision %d, want key %q put %v after revision %d", ev.Key, ev.Entry != nil, ev.Revision, want.key, want.put, rev)
			}
			if want.put && ev.Entry.ContainerID != "bbbb" {
				t.Fatalf("put event entry: got %+v", ev.Entry)
			}
			rev = ev.Revision
		case err := <-done:
			t.Fatalf("watch ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("no event for %s", want.key)
		}
	}
	wcancel()
	if err := <-done; err != nil {
		t.Fatalf("watch after cancel: got %v, want nil", err)
	}
}
