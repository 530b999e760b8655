package daemon

import (
	"encoding/json"
	"io"
	"log"
	"testing"

	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/nameserver/sidecar"
	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/etcdstore"
)

// FuzzRemoteEntry: whatever another host writes to etcd (the JSON of an
// entry), the sidecar's watch never panics; an entry it serves passed
// CheckRemote, and its removal leaves the table empty again.
func FuzzRemoteEntry(f *testing.F) {
	f.Add([]byte(`{"network":"net1","containerID":"c1","ifName":"eth0","host":"h2","ips":["10.1.0.2/24","fd01::2/64"],"gateways":["10.1.0.1"],"names":["web"],"aliases":["svc"],"dns":{"domain":"dns.podman","upstreams":["10.0.0.53:53"]}}`), "c1@eth0")
	f.Add([]byte(`{"network":"net1","containerID":"c1","ifName":"eth0","host":"h2","ips":["10.1.0.2/0"]}`), "c1@eth0")
	f.Add([]byte(`{"network":"net1","containerID":"c1","ifName":"eth0","host":"h2","ips":["::ffff:10.1.0.2/120"],"names":["","."]}`), "c1@eth0")
	f.Fuzz(func(t *testing.T, raw []byte, key string) {
		var e registry.Entry
		if json.Unmarshal(raw, &e) != nil {
			return
		}
		s := &server{table: nameserver.NewTable(), log: log.New(io.Discard, "", 0), progress: make(chan struct{}), self: "this-host", watches: map[string]*watch{}}
		w := &watch{network: "net1", remote: map[string]nameserver.Record{}}
		s.applyEvent(w, etcdstore.Event{Revision: 1, Key: key, Entry: &e})
		if s.table.Len() > 0 {
			if err := sidecar.CheckRemote(&e, "net1", key); err != nil {
				t.Fatalf("served an entry sidecar.CheckRemote refuses: %v", err)
			}
		}
		s.applyEvent(w, etcdstore.Event{Revision: 2, Key: key})
		if s.table.Len() != 0 {
			t.Fatalf("%d records left after the entry's deletion", s.table.Len())
		}
	})
}
