package registry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/etcdstore"
	"github.com/berthnet/berth/pkg/registry/registrytest"
)

// TestEtcdTLS runs the store's behaviour check against a real etcd that
// requires client certificates, and checks who is turned away: a client
// without a certificate, one whose certificate another CA signed, and a
// config that asks for TLS on a plain-http endpoint (refused before any
// connection).
func TestEtcdTLS(t *testing.T) {
	pki := registrytest.NewPKI(t, "berth-test")
	ep := registrytest.StartEtcdTLS(t, pki)

	s, err := etcdstore.OpenConfig(pki.Client(ep))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	registrytest.Store(t, s)

	// The sidecar's reader (a snapshot then a watch) on the same client.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := s.Snapshot(ctx, "net1"); err != nil {
		t.Errorf("snapshot over TLS with a client certificate: %v", err)
	}

	other := registrytest.NewPKI(t, "stranger")
	refused := []struct {
		name string
		cfg  *registry.Config
	}{
		{"no client certificate", &registry.Config{Endpoints: []string{ep}, TLS: &registry.TLSConfig{TrustedCAFile: pki.CA}, DialTimeout: time.Second}},
		{"client certificate of another CA", &registry.Config{Endpoints: []string{ep}, TLS: &registry.TLSConfig{CertFile: other.ClientCert, KeyFile: other.ClientKey, TrustedCAFile: pki.CA}, DialTimeout: time.Second}},
		{"server not trusted", &registry.Config{Endpoints: []string{ep}, TLS: &registry.TLSConfig{CertFile: pki.ClientCert, KeyFile: pki.ClientKey, TrustedCAFile: other.CA}, DialTimeout: time.Second}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			s, err := etcdstore.OpenConfig(tc.cfg)
			if err != nil {
				return // refused at dial: fine
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if _, err := s.Networks(ctx); err == nil {
				t.Fatal("got an answer from etcd, want the connection refused")
			}
		})
	}

	t.Run("plain http with TLS configured", func(t *testing.T) {
		plain := "http" + strings.TrimPrefix(ep, "https")
		_, err := etcdstore.OpenConfig(pki.Client(plain))
		if err == nil || !strings.Contains(err.Error(), "endpoints[0]") || !strings.Contains(err.Error(), "https://") {
			t.Fatalf("got %v, want a refusal naming endpoints[0] and https://", err)
		}
	})
	t.Run("certificate without key", func(t *testing.T) {
		cfg := pki.Client(ep)
		cfg.TLS.KeyFile = ""
		if _, err := etcdstore.OpenConfig(cfg); err == nil || !strings.Contains(err.Error(), "keyFile") {
			t.Fatalf("got %v, want a refusal naming keyFile", err)
		}
	})
}
