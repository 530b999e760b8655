package daemon

import (
	"io"
	"log"
	"net/netip"
	"testing"

	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/etcdstore"
)

// TestRemoteEntriesVetted: entries another host wrote to etcd are served
// only when they belong to the watched network under their own key and
// carry subnet-sized prefixes. Before, an entry claiming 10.1.0.9/0 put
// every source in the network's scope (an open resolver again), and one
// naming another network landed in that network's names.
func TestRemoteEntriesVetted(t *testing.T) {
	entry := func(network, id string, ips ...string) *registry.Entry {
		e := &registry.Entry{Network: network, ContainerID: id, IfName: "eth0", Host: "other-host"}
		for _, ip := range ips {
			e.IPs = append(e.IPs, netip.MustParsePrefix(ip))
		}
		return e
	}
	tests := []struct {
		name  string
		e     *registry.Entry
		key   string
		serve bool
	}{
		{"a container of another host", entry("net1", "c1", "10.1.0.2/24", "fd01::2/64"), "c1@eth0", true},
		{"prefix /0 opens the scope to all", entry("net1", "c2", "10.1.0.9/0"), "c2@eth0", false},
		{"IPv6 prefix /8", entry("net1", "c3", "fd01::3/8"), "c3@eth0", false},
		{"another network's entry", entry("net2", "c4", "10.2.0.2/24"), "c4@eth0", false},
		{"under another key", entry("net1", "c5", "10.1.0.5/24"), "c1@eth0", false},
		{"invalid container ID", entry("net1", "../x", "10.1.0.6/24"), "../x@eth0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &server{table: nameserver.NewTable(), log: log.New(io.Discard, "", 0), progress: make(chan struct{}), self: "this-host", watches: map[string]*watch{}}
			w := &watch{network: "net1", remote: map[string]nameserver.Record{}}
			s.applyEvent(w, etcdstore.Event{Revision: 1, Key: tt.key, Entry: tt.e})
			if got := s.table.Len() == 1; got != tt.serve {
				t.Errorf("served=%v (table has %d records), want %v", got, s.table.Len(), tt.serve)
			}
		})
	}
}
