package etcdstore

import (
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Client is the underlying etcd client, for users of etcd beyond the
// registry's entries (the overlay's subnet leases: transactions and
// leases), so that OpenConfig stays the one place a client is made.
func (s *Etcd) Client() *clientv3.Client { return s.cli }
