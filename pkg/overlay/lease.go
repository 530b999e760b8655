package overlay

// Subnet leases: each host holds one host subnet of the overlay, claimed
// with a create-if-absent transaction under a TTL lease and published with
// its VTEP. The host keeps a copy (the lease file) so that it needs etcd
// only to claim, never to add containers to a subnet it already holds.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berthnet/berth/internal/atomicfile"
	"github.com/berthnet/berth/internal/flock"
)

// Record is the value of a subnet's key: who holds it and where its VTEP
// is.
type Record struct {
	HostID   string     `json:"hostID"`
	Underlay netip.Addr `json:"underlay"`
	VTEPMAC  string     `json:"vtepMAC"`
}

func (r Record) mac() net.HardwareAddr {
	m, _ := net.ParseMAC(r.VTEPMAC)
	return m
}

// Lease is this host's lease of one overlay: the lease file's content.
type Lease struct {
	Subnet netip.Prefix `json:"subnet"`
	Record
	// LeaseID is etcd's lease the key is attached to (0 for the local
	// store); the daemon keeps it alive, or takes a new one.
	LeaseID int64 `json:"leaseID,omitempty"`
}

// ReadLease reads the lease file; (nil, nil) when there is none.
func ReadLease(path string) (*Lease, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var l Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &l, nil
}

// WriteLease writes the lease file.
func WriteLease(path string, l *Lease) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), atomicfile.Sync())
}

// LockLease serializes claims of one network on this host (concurrent
// ADDs must not claim two subnets).
func LockLease(path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := flock.Open(path+".lock", os.O_CREATE)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// HostID returns the host's identity, kept in path (created with a random
// ID on first use, like /etc/machine-id): leases are tied to it, so a
// host gets its subnet back after a daemon restart or a reboot.
func HostID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	// O_EXCL: of two racing first ADDs, one ID wins and both read it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return HostID(path)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.WriteString(id + "\n"); err != nil {
		return "", err
	}
	return id, f.Sync()
}

// ClaimLocal picks the subnet for the local store: one host, so the first
// host subnet, or the one it already had.
func ClaimLocal(n *Network, prev *Lease, rec Record) *Lease {
	if prev != nil && n.Subnet.Contains(prev.Subnet.Addr()) && prev.Subnet.Bits() == n.HostSubnetLen {
		return &Lease{Subnet: prev.Subnet, Record: rec}
	}
	return &Lease{Subnet: n.HostSubnet(0), Record: rec}
}

// ErrFull: every host subnet of the overlay is held by another host.
var ErrFull = errors.New("no free host subnet")

// Claim obtains a host subnet in etcd for rec.HostID: the one etcd already
// has under this host's ID, else prefer (the subnet it held before), else
// the first free one; each claim is a transaction that creates the key
// only if absent, attached to a fresh TTL lease.
func Claim(ctx context.Context, cli *clientv3.Client, n *Network, rec Record, prefer netip.Prefix) (*Lease, error) {
	resp, err := cli.Get(ctx, n.keyPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	taken := map[netip.Prefix]bool{}
	var mine []netip.Prefix
	for _, kv := range resp.Kvs {
		p, ok := n.subnetOfKey(string(kv.Key))
		if !ok {
			continue
		}
		var r Record
		if json.Unmarshal(kv.Value, &r) == nil && r.HostID == rec.HostID {
			mine = append(mine, p)
			continue
		}
		taken[p] = true
	}
	grant, err := cli.Grant(ctx, n.LeaseTTL)
	if err != nil {
		return nil, err
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	// Ours already (a restart that lost its lease file, or a claim that
	// never got written down): take it over under the new lease, as long
	// as it is still ours.
	for _, p := range mine {
		k := n.key(p)
		txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", string(valueOf(resp, k)))).
			Then(clientv3.OpPut(k, string(val), clientv3.WithLease(grant.ID))).Commit()
		if err != nil {
			return nil, err
		}
		if txn.Succeeded {
			return &Lease{Subnet: p, Record: rec, LeaseID: int64(grant.ID)}, nil
		}
	}
	try := func(p netip.Prefix) (bool, error) {
		k := n.key(p)
		txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, string(val), clientv3.WithLease(grant.ID))).Commit()
		if err != nil {
			return false, err
		}
		return txn.Succeeded, nil
	}
	candidates := make([]netip.Prefix, 0, n.HostSubnets()+1)
	if prefer.IsValid() {
		candidates = append(candidates, prefer)
	}
	for i := 0; i < n.HostSubnets(); i++ {
		candidates = append(candidates, n.HostSubnet(i))
	}
	for _, p := range candidates {
		if taken[p] {
			continue
		}
		ok, err := try(p)
		if err != nil {
			return nil, err
		}
		if ok {
			return &Lease{Subnet: p, Record: rec, LeaseID: int64(grant.ID)}, nil
		}
		// Taken since our read: by a host claiming at the same time.
		taken[p] = true
	}
	_, _ = cli.Revoke(ctx, grant.ID)
	return nil, fmt.Errorf("%w in %s (/%d each)", ErrFull, n.Subnet, n.HostSubnetLen)
}

// valueOf is k's value in resp (nil if absent).
func valueOf(resp *clientv3.GetResponse, k string) []byte {
	for _, kv := range resp.Kvs {
		if string(kv.Key) == k {
			return kv.Value
		}
	}
	return nil
}

// Publish makes etcd hold l's record under l's lease (taking a new lease
// when etcd no longer knows it), unless another host holds the subnet now.
// It returns the lease ID in use.
func Publish(ctx context.Context, cli *clientv3.Client, n *Network, l *Lease) (int64, error) {
	id := clientv3.LeaseID(l.LeaseID)
	if id != 0 {
		ttl, err := cli.TimeToLive(ctx, id)
		if err != nil {
			return 0, err
		}
		if ttl.TTL <= 0 {
			id = 0 // expired or unknown
		}
	}
	if id == 0 {
		g, err := cli.Grant(ctx, n.LeaseTTL)
		if err != nil {
			return 0, err
		}
		id = g.ID
	}
	val, err := json.Marshal(l.Record)
	if err != nil {
		return 0, err
	}
	k := n.key(l.Subnet)
	resp, err := cli.Get(ctx, k)
	if err != nil {
		return 0, err
	}
	cmp := clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
	if len(resp.Kvs) == 1 {
		var r Record
		if json.Unmarshal(resp.Kvs[0].Value, &r) == nil && r.HostID != l.HostID {
			return 0, fmt.Errorf("subnet %s is held by host %s now", l.Subnet, r.HostID)
		}
		if string(resp.Kvs[0].Value) == string(val) && resp.Kvs[0].Lease == int64(id) {
			return int64(id), nil
		}
		cmp = clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision)
	}
	txn, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(k, string(val), clientv3.WithLease(id))).Commit()
	if err != nil {
		return 0, err
	}
	if !txn.Succeeded {
		return 0, fmt.Errorf("subnet %s changed while publishing; retrying", l.Subnet)
	}
	return int64(id), nil
}
