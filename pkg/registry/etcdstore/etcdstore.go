// Package etcdstore is the registry's etcd v3 backend, for networks that
// span hosts, and the watch that follows a network's entries (watch.go).
// It is a package of its own so that programs that use only the file
// backend do not link the etcd client (gRPC, protobuf).
package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/berthnet/berth/pkg/registry"
)

// Etcd is the etcd v3 backend (a registry.Store): prefix<network>/<containerID>@<ifname> holds
// the entry's JSON. Every operation is a single etcd request, so it is
// atomic and needs no lock.
type Etcd struct {
	cli    *clientv3.Client
	prefix string
}

// DefaultEtcdPrefix is where entries live unless Config.Prefix says otherwise.
const DefaultEtcdPrefix = registry.DefaultEtcdPrefix

// Open connects to etcd. The client dials lazily; the first request
// fails (bounded by its context) if no endpoint answers.
func Open(endpoints []string, prefix string, dialTimeout time.Duration) (*Etcd, error) {
	return OpenConfig(&registry.Config{Backend: registry.BackendEtcd, Endpoints: endpoints, Prefix: prefix, DialTimeout: dialTimeout})
}

// OpenConfig connects to the etcd cfg names. It is the one place berth
// makes an etcd client (the dnsname plugin's store, the DNS sidecar's
// watches): connection settings go here.
func OpenConfig(cfg *registry.Config) (*Etcd, error) {
	if err := cfg.ValidateEtcd(); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	dialTimeout := cfg.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = 5 * time.Second
	}
	tlsConf, err := cfg.ClientTLS()
	if err != nil {
		return nil, err
	}
	// gRPC's reconnection backoff grows to two minutes by default: a
	// daemon that saw etcd go away would stay cut off that long after it
	// came back. A second between attempts at most is cheap for a handful
	// of endpoints.
	reconnect := grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: dialTimeout,
	})
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: dialTimeout, TLS: tlsConf, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{reconnect}})
	if err != nil {
		return nil, fmt.Errorf("registry: etcd %v: %w", cfg.Endpoints, err)
	}
	return &Etcd{cli: cli, prefix: registry.EtcdPrefix(cfg.Prefix)}, nil
}

// Close closes the client.
func (s *Etcd) Close() error { return s.cli.Close() }

func (s *Etcd) key(network, containerID, ifName string) string {
	return s.prefix + network + "/" + registry.EntryName(containerID, ifName)
}

// Put writes e.
func (s *Etcd) Put(ctx context.Context, e *registry.Entry) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("registry: encoding entry: %w", err)
	}
	if _, err := s.cli.Put(ctx, s.key(e.Network, e.ContainerID, e.IfName), string(b)); err != nil {
		return fmt.Errorf("registry: etcd put: %w", err)
	}
	return nil
}

// Get reads one entry.
func (s *Etcd) Get(ctx context.Context, network, containerID, ifName string) (*registry.Entry, error) {
	if err := registry.ValidKey(network, containerID, ifName); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	resp, err := s.cli.Get(ctx, s.key(network, containerID, ifName))
	if err != nil {
		return nil, fmt.Errorf("registry: etcd get: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, registry.ErrNotFound
	}
	var e registry.Entry
	if err := json.Unmarshal(resp.Kvs[0].Value, &e); err != nil {
		return nil, fmt.Errorf("registry: %s: %w", resp.Kvs[0].Key, err)
	}
	return &e, nil
}

// Delete removes an entry (no error when absent).
func (s *Etcd) Delete(ctx context.Context, network, containerID, ifName string) error {
	if err := registry.ValidKey(network, containerID, ifName); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if _, err := s.cli.Delete(ctx, s.key(network, containerID, ifName)); err != nil {
		return fmt.Errorf("registry: etcd delete: %w", err)
	}
	return nil
}

// List returns the network's entries in key order.
func (s *Etcd) List(ctx context.Context, network string) ([]*registry.Entry, error) {
	if err := registry.SafeNetwork(network); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, s.prefix+network+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("registry: etcd list: %w", err)
	}
	out := make([]*registry.Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var e registry.Entry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("registry: %s: %w", kv.Key, err)
		}
		out = append(out, &e)
	}
	return out, nil
}

// Networks returns the networks that have entries.
func (s *Etcd) Networks(ctx context.Context) ([]string, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("registry: etcd list: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, kv := range resp.Kvs {
		net, _, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), s.prefix), "/")
		if ok && !seen[net] {
			seen[net] = true
			out = append(out, net)
		}
	}
	sort.Strings(out)
	return out, nil
}
