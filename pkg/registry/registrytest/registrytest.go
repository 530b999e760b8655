// Package registrytest holds what the registry backends' tests share: one
// behaviour check run against every Store, and a throwaway etcd.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/etcdstore"
)

func entry(network, id, ifname string, ip string) *registry.Entry {
	return &registry.Entry{
		Network: network, ContainerID: id, IfName: ifname,
		IPs:      []netip.Prefix{netip.MustParsePrefix(ip)},
		Gateways: []netip.Addr{netip.MustParseAddr("10.1.0.1")},
		Names:    []string{"web", id[:4]}, Aliases: []string{"www"},
		DNS:     registry.DNSConfig{Domain: "dns.podman", Upstreams: []string{"10.9.9.9:53"}},
		Created: time.Unix(1700000000, 0).UTC(),
	}
}

// Store runs the same behaviour checks against any backend.
func Store(t *testing.T, s registry.Store) {
	ctx := context.Background()
	a := entry("net1", "aaaa1111", "eth0", "10.1.0.2/24")
	b := entry("net1", "bbbb2222", "eth0", "10.1.0.3/24")
	c := entry("net2", "aaaa1111", "eth1", "10.2.0.2/24")
	for _, e := range []*registry.Entry{a, b, c} {
		if err := s.Put(ctx, e); err != nil {
			t.Fatalf("Put(%s): %v", e.ContainerID, err)
		}
	}
	got, err := s.Get(ctx, "net1", "aaaa1111", "eth0")
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("Get: got %+v, %v; want %+v", got, err, a)
	}
	if _, err := s.Get(ctx, "net1", "cccc", "eth0"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Get missing: got %v, want registry.ErrNotFound", err)
	}
	nets, err := s.Networks(ctx)
	if err != nil || !reflect.DeepEqual(nets, []string{"net1", "net2"}) {
		t.Fatalf("Networks: got %v, %v; want [net1 net2]", nets, err)
	}
	list, err := s.List(ctx, "net1")
	if err != nil || len(list) != 2 || list[0].ContainerID != "aaaa1111" || list[1].ContainerID != "bbbb2222" {
		t.Fatalf("List(net1): got %d entries %v, want aaaa1111 and bbbb2222", len(list), err)
	}
	// Replace.
	a2 := entry("net1", "aaaa1111", "eth0", "10.1.0.9/24")
	if err := s.Put(ctx, a2); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "net1", "aaaa1111", "eth0"); got == nil || got.IPs[0] != a2.IPs[0] {
		t.Fatalf("after replace: got %+v, want IP %v", got, a2.IPs[0])
	}
	// Delete is idempotent and the last one removes the network.
	for range 2 {
		if err := s.Delete(ctx, "net2", "aaaa1111", "eth1"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if err := s.Delete(ctx, "never", "x", "eth0"); err != nil {
		t.Fatalf("Delete without Put: %v", err)
	}
	nets, _ = s.Networks(ctx)
	if !reflect.DeepEqual(nets, []string{"net1"}) {
		t.Fatalf("Networks after deleting net2's last entry: got %v, want [net1]", nets)
	}
	if l, err := s.List(ctx, "net2"); err != nil || len(l) != 0 {
		t.Fatalf("List(net2): got %v, %v; want none", l, err)
	}
	// Bad keys are refused, never used as paths.
	for _, bad := range []*registry.Entry{
		entry("../etc", "aaaa1111", "eth0", "10.0.0.1/8"),
		entry("net1", "aaaa/../x", "eth0", "10.0.0.1/8"),
		entry("net1", "aaaa1111", "eth0/x", "10.0.0.1/8"),
	} {
		if err := s.Put(ctx, bad); err == nil {
			t.Errorf("Put(%q,%q,%q): got nil error, want refusal", bad.Network, bad.ContainerID, bad.IfName)
		}
	}
	// Concurrent writers of one network all land.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Put(ctx, entry("net3", fmt.Sprintf("c%04d", i), "eth0", fmt.Sprintf("10.3.0.%d/24", i+2))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if l, err := s.List(ctx, "net3"); err != nil || len(l) != 50 {
		t.Fatalf("List(net3) after 50 concurrent puts: got %d, %v; want 50", len(l), err)
	}
}

// StartEtcd runs a throwaway etcd (Debian's etcd-server) on loopback with
// free ports and a temp data dir, kills it on cleanup, and returns its
// client URL once it answers.
func StartEtcd(t testing.TB) string { return startEtcd(t, nil) }

// startEtcd is StartEtcd, serving clients over TLS (https, client
// certificates signed by p's CA required) when p is not nil.
func startEtcd(t testing.TB, p *PKI) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("etcd not found: apt-get install -y etcd-server")
	}
	scheme := "http"
	if p != nil {
		scheme = "https"
	}
	client, peer := freePort(t), freePort(t)
	cu := fmt.Sprintf("%s://127.0.0.1:%d", scheme, client)
	pu := fmt.Sprintf("http://127.0.0.1:%d", peer)
	dir := t.TempDir()
	args := []string{"--name", "t", "--data-dir", dir,
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "t=" + pu}
	cfg := &registry.Config{Backend: registry.BackendEtcd, Endpoints: []string{cu}, Prefix: "/probe/"}
	if p != nil {
		args = append(args, "--cert-file", p.ServerCert, "--key-file", p.ServerKey,
			"--client-cert-auth", "--trusted-ca-file", p.CA)
		cfg = p.Client(cu)
	}
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	// The client waits for the server itself: a request with a deadline
	// blocks until etcd is up (no polling here).
	s, err := etcdstore.OpenConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.Networks(ctx); err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("etcd (%s) did not come up: %v\n%s", cu, err, b)
	}
	return cu
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
