package firewall

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/berthnet/berth/internal/flock"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Per-network state (DESIGN.md, Ownership): besides each attachment's
// elements, a network has objects shared by its attachments: the
// masquerade chain of its subnet, its bridge in the isolation sets, its
// subnet in the hairpin sets, the iptables subnet chain and bridge rules.
// They go when the network's last attachment goes, and in GC.
//
// Shared objects are (re)added by every ADD, in the ADD's transaction, and
// the teardown must not interleave with an ADD: a DEL that saw no
// attachment, then an ADD's commit, then the DEL's deletion would leave the
// new attachment without its network's objects. nftables counts for us:
// the kernel refuses (EBUSY) to delete a chain that a map element jumps
// to, and a transaction is atomic. So a masquerade chain is deleted on its
// own (the masq map's elements jump to it), and for the shared set
// elements each kind of attachment (ports, isolation) holds a reference
// element in a map of its own, jumping to an empty per-network chain; the
// teardown deletes that chain together with the shared elements, in one
// transaction that the kernel refuses while any reference is left. No
// lock, no dump of the attachments, whatever their number.
//
// iptables has no transactions over several commands, so its backends use
// a lock (LockFile): ADDs hold it shared, the teardown exclusively.

// LockFile is the host-wide lock of the iptables backends between ADDs and
// per-network teardown. It is on tmpfs: the kernel state it guards does
// not survive a reboot either.
const LockFile = "/run/cni/berth/firewall.lock"

// lockShared and lockExclusive take LockFile; the returned func releases it.
func lockShared() (func(), error)    { return lockState(flock.OpenShared) }
func lockExclusive() (func(), error) { return lockState(flock.Open) }

func lockState(open func(string, int) (*os.File, error)) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(LockFile), 0o700); err != nil {
		return nil, fmt.Errorf("firewall lock: %w", err)
	}
	f, err := open(LockFile, os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("firewall lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// Reference maps and chains (see above): "ports-refs" / "fw-refs", keyed
// by a hash of the attachment's tag, jumping to "ports-net-<network>" /
// "fw-net-<network>".
const (
	portsRefs     = "ports-refs"
	portsNetChain = "ports-net-"
	isoRefs       = "fw-refs"
	isoNetChain   = "fw-net-"
)

// refMap is a reference map: 16-byte keys (the ipv6_addr type is only a
// carrier of the right size) to verdicts.
func refMap(name string) *nftables.Set {
	return &nftables.Set{Table: nftTable(), Name: name, KeyType: nftables.TypeIP6Addr, DataType: nftables.TypeVerdict, IsMap: true}
}

// refKey is the attachment's key in a reference map: unique to the
// attachment, so deleting it by key never touches another's.
func refKey(tg string) []byte {
	sum := sha256.Sum256([]byte(tg))
	return sum[:16]
}

// addRef queues, in an ADD's transaction, the network's reference chain
// and the attachment's reference to it. The chain is created only when it
// is missing (or force): re-adding an existing chain is an update that
// costs a grace period. If the last DEL of the network deletes it before
// this commit, the reference's jump fails the transaction (ENOENT) and the
// caller retries with force.
func addRef(c *nftables.Conn, t *nftables.Table, mapName, chainPrefix, network, tg string, force bool) error {
	s := refMap(mapName)
	s.Table = t
	if err := c.AddSet(s, nil); err != nil {
		return fmt.Errorf("nftables: map %s: %w", mapName, err)
	}
	name := chainPrefix + shorten(network)
	if force || !chainHolds(c, t, name, 0) {
		c.AddChain(&nftables.Chain{Name: name, Table: t})
	}
	el := nftables.SetElement{Key: refKey(tg), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: name}, Comment: tg}
	if err := c.SetAddElements(s, []nftables.SetElement{el}); err != nil {
		return fmt.Errorf("nftables: %s element: %w", mapName, err)
	}
	return nil
}

// dropNetwork deletes the network's reference chain and its shared
// elements (comment = the network) in one transaction, which the kernel
// refuses while an attachment of the network still references the chain;
// then, or when there is no such chain, nothing changes.
//
// It first looks at the chain's use count (one GET): while another
// attachment references it there is nothing to try, and the attempt would
// still cost a grace period (see chainUse). A count of 0 read just before
// an ADD commits its reference is harmless: the transaction below is still
// refused then.
func dropNetwork(chainPrefix, network string, shared []*nftables.Set) error {
	net := shorten(network)
	use, found, err := chainUse(nil, nftTable(), chainPrefix+net)
	if err != nil {
		return err
	}
	if !found || use > 0 {
		return nil
	}
	c, err := newConn()
	if err != nil {
		return err
	}
	var queue []func() error
	for _, s := range shared {
		els, err := dumpElements(c, s)
		if err != nil {
			return err
		}
		drop := func(cm string) bool { return cm == net }
		var del []nftables.SetElement
		if s.Interval {
			del = intervalsOf(els, drop)
		} else {
			for _, e := range els {
				if drop(e.Comment) {
					del = append(del, nftables.SetElement{Key: e.Key})
				}
			}
		}
		if len(del) > 0 {
			s := s
			queue = append(queue, func() error { return c.SetDeleteElements(s, del) })
		}
	}
	c.DelChain(&nftables.Chain{Name: chainPrefix + net, Table: nftTable()})
	for _, q := range queue {
		if err := q(); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
	}
	if err := c.Flush(); err != nil && !isBusy(err) && !isNotExist(err) {
		return fmt.Errorf("nftables: removing network %s: %w", network, err)
	}
	return nil
}

// isBusy: the kernel refused to delete an object still referenced.
func isBusy(err error) bool {
	return errors.Is(err, unix.EBUSY) || (err != nil && strings.Contains(err.Error(), "device or resource busy"))
}

// dropUnusedChains deletes each chain in its own transaction, unless a map
// element or rule still jumps to it (EBUSY) or it is gone already. A chain
// whose use count (one GET, see chainUse) is above its own rules' is
// referenced: no transaction is tried.
func dropUnusedChains(chains []string, ownRules uint32) error {
	var errs []error
	nl, err := dialNetfilter()
	if err != nil {
		return err
	}
	defer nl.Close()
	for _, name := range chains {
		use, found, err := chainUse(nl, nftTable(), name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !found || use > ownRules {
			continue
		}
		c, err := newConn()
		if err != nil {
			return err
		}
		c.DelChain(&nftables.Chain{Name: name, Table: nftTable()})
		if err := c.Flush(); err != nil && !isBusy(err) && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("nftables: deleting chain %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// intervalsOf pairs each start element whose comment satisfies drop with
// its end element (the first end above it: intervals do not overlap), as
// the kernel wants both deleted together.
func intervalsOf(els []nftables.SetElement, drop func(string) bool) []nftables.SetElement {
	sort.Slice(els, func(i, j int) bool { return bytes.Compare(els[i].Key, els[j].Key) < 0 })
	var out []nftables.SetElement
	for i, e := range els {
		if e.IntervalEnd || !drop(e.Comment) {
			continue
		}
		out = append(out, nftables.SetElement{Key: e.Key})
		for _, end := range els[i+1:] {
			// Strictly above: an adjacent interval's end shares the key.
			if end.IntervalEnd && bytes.Compare(end.Key, e.Key) > 0 {
				out = append(out, nftables.SetElement{Key: end.Key, IntervalEnd: true})
				break
			}
		}
	}
	return out
}
