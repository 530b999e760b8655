package portmap_test

import (
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

const (
	hostOutIP6 = "2001:db8:1::1" // the private host's "public" IPv6 address
	outIP6     = "2001:db8:1::2"
)

// IPv6: containerd's dual-stack config with a published port reaches the
// container from an outside client through the host's IPv6 address, for a
// mapping on every address and one on a given hostIP, in both backends.
func TestPublishedPortsIPv6(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t)
			// nodad: the addresses are ours alone, and a tentative address
			// would refuse the first connections.
			e.Host.MustExec(t, "ip", "addr", "add", hostOutIP6+"/64", "dev", "up0", "nodad")
			e.out.MustExec(t, "ip", "addr", "add", outIP6+"/64", "dev", "eth0", "nodad")
			list := nstest.Conflist(t, nstest.Example(t, "containerd-default.conflist"), nstest.DataDir(e.DataDir), setPortmapBackend(backend))
			c := e.newContainer(t, "v6-"+backend,
				mapping{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
				mapping{HostPort: 8081, ContainerPort: 80, Protocol: "tcp", HostIP: hostOutIP6},
			)
			if err := e.add(t, list, c); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			c.serve(t)
			hello := "hello from " + c.id
			wantHTTP(t, "outside via the host's IPv6 address", e.out, "http://["+hostOutIP6+"]:8080/", hello)
			wantHTTP(t, "outside via the IPv6 hostIP mapping", e.out, "http://["+hostOutIP6+"]:8081/", hello)
			wantHTTP(t, "IPv4 still published", e.out, "http://"+hostOutIP+":8080/", hello)
			wantNoHTTP(t, "the hostIP mapping is not on the IPv4 address", e.out, "http://"+hostOutIP+":8081/")
		})
	}
}

// setPortmapBackend picks the backend of portmap and of the bridge's ipMasq.
func setPortmapBackend(backend string) func(map[string]any) {
	return func(m map[string]any) {
		for _, p := range m["plugins"].([]any) {
			pm := p.(map[string]any)
			switch pm["type"] {
			case "portmap":
				pm["backend"] = backend
			case "bridge":
				pm["ipMasqBackend"] = backend
			}
		}
	}
}
