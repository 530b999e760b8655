// Package registry_test runs the registry's etcd backend and watch against
// a real etcd (on loopback, with a temporary data directory): integration
// tests, kept out of `make unit`, which needs nothing installed.
package registry_test

import (
	"testing"

	"github.com/berthnet/berth/pkg/registry/etcdstore"
	"github.com/berthnet/berth/pkg/registry/registrytest"
)

func TestEtcd(t *testing.T) {
	ep := registrytest.StartEtcd(t)
	s, err := etcdstore.Open([]string{ep}, "/test/"+t.Name(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	registrytest.Store(t, s)
}
