package firewall

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
)

// BenchmarkNftAttachment times each nftables step of attachments' ADDs
// and DELs (b.N of each, up to 60000) (masquerade, one published port, same-bridge isolation) while
// another attachment of the network stays, so the per-network teardown
// attempts meet a network in use, as on every DEL but the last.
//
//	go test -run XXX -bench NftAttachment ./pkg/firewall/
func BenchmarkNftAttachment(b *testing.B) {
	nstest.RequireRoot(b)
	n := nstest.NewNS(b, "fwb")
	att := benchAttachment
	steps := map[string]time.Duration{}
	timed := func(name string, f func() error) {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		steps[name] += time.Since(start)
	}
	err := n.Do(func(ns.NetNS) error {
		m0, p0, i0 := att(0)
		for _, f := range []func() error{func() error { return (nftMasq{}).AddMasq(m0) }, func() error { return (nftPorts{}).AddPorts(p0) }, func() error { return (nftIso{}).AddIsolation(i0) }} {
			if err := f(); err != nil {
				return err
			}
		}
		b.ResetTimer()
		// All ADDs, then all DELs: a socket closed after a deletion waits
		// for its grace period (see chainUse), which would otherwise be
		// charged to the next ADD.
		for i := 0; i < b.N; i++ {
			m, p, iso := att(1 + i)
			timed("add masq", func() error { return (nftMasq{}).AddMasq(m) })
			timed("add ports", func() error { return (nftPorts{}).AddPorts(p) })
			timed("add isolation", func() error { return (nftIso{}).AddIsolation(iso) })
		}
		for i := 0; i < b.N; i++ {
			m, p, iso := att(1 + i)
			timed("del masq", func() error { return (nftMasq{}).DelMasq(m) })
			timed("del ports", func() error { return (nftPorts{}).DelPorts(p) })
			timed("del isolation", func() error { return (nftIso{}).DelIsolation(iso) })
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for name, d := range steps {
		b.ReportMetric(float64(d.Microseconds())/float64(b.N)/1000, "ms/"+name[:3]+"-"+name[4:])
	}
}

// benchAttachment is attachment i of one network: one address, one
// published port, same-bridge isolation.
func benchAttachment(i int) (Masq, PortMap, Isolation) {
	ip := &net.IPNet{IP: net.IPv4(10, 7, byte(i/250), byte(2+i%250)), Mask: net.CIDRMask(16, 32)}
	id := fmt.Sprintf("c%d", i)
	return Masq{Network: "bn", ContainerID: id, IfName: "eth0", IPs: []*net.IPNet{ip}},
		PortMap{Network: "bn", ContainerID: id, IfName: "eth0", ContainerIPs: []*net.IPNet{ip}, SNAT: true,
			Mappings: []PortMapping{{HostPort: 20000 + i, ContainerPort: 80, Protocol: "tcp"}}},
		Isolation{Network: "bn", ContainerID: id, IfName: "eth0", IPs: []*net.IPNet{ip}, Policy: PolicySameBridge, Bridge: "bn0"}
}
