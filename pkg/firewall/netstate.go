package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Per-network state (DESIGN.md, Ownership): besides each attachment's
// elements, a network has objects shared by its attachments: the
// masquerade chain of its subnet, its bridge in the isolation sets, its
// subnet in the hairpin sets, the iptables subnet chain. They go when the
// network's last attachment goes, and in GC.
//
// Shared objects are (re)added by every ADD, in the ADD's transaction. A
// DEL that finds no attachment of the network left deletes them. The two
// must not interleave: a DEL that saw no attachment, followed by an ADD's
// commit, followed by the DEL's deletion would leave the new attachment
// without its network's objects. So ADDs hold a shared lock around their
// transaction (they never wait on each other) and the DEL takes the lock
// exclusively to look again and delete. Masquerade chains need no lock:
// the kernel refuses (EBUSY) to delete a chain a map element jumps to, and
// transactions are atomic.

// LockFile is the host-wide lock between ADDs and per-network teardown. It
// is on tmpfs: the kernel state it guards does not survive a reboot either.
const LockFile = "/run/cni/berth/firewall.lock"

// lockShared and lockExclusive take LockFile; the returned func releases it.
func lockShared() (func(), error)    { return lockState(syscall.LOCK_SH) }
func lockExclusive() (func(), error) { return lockState(syscall.LOCK_EX) }

func lockState(how int) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(LockFile), 0o700); err != nil {
		return nil, fmt.Errorf("firewall lock: %w", err)
	}
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("firewall lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("firewall lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// isBusy: the kernel refused to delete an object still referenced.
func isBusy(err error) bool {
	return errors.Is(err, unix.EBUSY) || (err != nil && strings.Contains(err.Error(), "device or resource busy"))
}

// dropUnusedChains deletes each chain in its own transaction, unless a map
// element or rule still jumps to it (EBUSY) or it is gone already.
func dropUnusedChains(chains []string) error {
	var errs []error
	for _, name := range chains {
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

// networkHas reports whether any element of sets carries a tag of network
// (its shortened form, as in tags).
func networkHas(c *nftables.Conn, sets []*nftables.Set, network string) (bool, error) {
	for _, s := range sets {
		els, err := dumpElements(c, s)
		if err != nil {
			return false, err
		}
		for _, e := range els {
			if tagNetwork(e.Comment) == network {
				return true, nil
			}
		}
	}
	return false, nil
}

// dropNetworkShared deletes the network's shared elements (comment = the
// network's name) from shared, once no element of tagged carries one of
// its attachments' tags. The first look is without the lock (DELs of other
// networks' containers, the common case, never wait); the second is under
// the exclusive lock, with no ADD in flight.
func dropNetworkShared(network string, tagged, shared []*nftables.Set) error {
	net := shorten(network)
	c, err := newConn()
	if err != nil {
		return err
	}
	if has, err := networkHas(c, tagged, net); err != nil || has {
		return err
	}
	if has, err := sharedHas(c, shared, net); err != nil || !has {
		return err
	}
	unlock, err := lockExclusive()
	if err != nil {
		return err
	}
	defer unlock()
	if has, err := networkHas(c, tagged, net); err != nil || has {
		return err
	}
	return deleteShared(c, shared, func(s string) bool { return s == net })
}

// sharedHas reports whether any element of shared is the network's.
func sharedHas(c *nftables.Conn, shared []*nftables.Set, network string) (bool, error) {
	for _, s := range shared {
		els, err := dumpElements(c, s)
		if err != nil {
			return false, err
		}
		for _, e := range els {
			if e.Comment == network {
				return true, nil
			}
		}
	}
	return false, nil
}

// deleteShared deletes the elements of shared whose comment satisfies drop;
// for an interval set, the interval's end element goes with its start.
func deleteShared(c *nftables.Conn, shared []*nftables.Set, drop func(string) bool) error {
	n := 0
	for _, s := range shared {
		els, err := dumpElements(c, s)
		if err != nil {
			return err
		}
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
		if len(del) == 0 {
			continue
		}
		if err := c.SetDeleteElements(s, del); err != nil {
			return fmt.Errorf("nftables: %s: %w", s.Name, err)
		}
		n += len(del)
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil && !isNotExist(err) {
		return fmt.Errorf("nftables: deleting %d shared elements: %w", n, err)
	}
	return nil
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
