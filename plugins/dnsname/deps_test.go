package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoEtcdClient: the dnsname binary does not link the etcd client,
// whose package init (gRPC, protobuf) cost every dnsname process ~2-3 ms
// before any work (GODEBUG=inittrace=1; issue 14). Etcd-backed networks
// are served by dnsname-etcd, which dnsname execs.
func TestNoEtcdClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v: %s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "go.etcd.io/") || strings.HasPrefix(dep, "google.golang.org/grpc") {
			t.Errorf("dnsname links %s", dep)
		}
	}
}
