package firewall

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/fdkeeper"
)

// TableName is the one nftables table (family inet) that holds every rule,
// set and map berth makes. Deleting it (nft delete table inet berth) removes
// all of berth's packet filtering and NAT at once.
const TableName = "berth"

// nftTable is the table object used in every transaction; adding it is
// idempotent (NLM_F_CREATE without NLM_F_EXCL), so every call can start by
// adding it and concurrent first calls from separate processes converge.
func nftTable() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// newConn returns a connection acting on the calling thread's network
// namespace (each Flush and List dials its own netlink socket from that
// thread, handed to the keeper: see keepSocket).
func newConn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithSockOptions(keepSocket))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// dialNetfilter opens a raw netfilter socket (element and chain GETs the
// library has no call for), handed to the keeper like every other.
func dialNetfilter() (*netlink.Conn, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	if err := keepSocket(nl); err != nil {
		nl.Close()
		return nil, err
	}
	return nl, nil
}

// keepSockets says whether keepSocket hands sockets to the fdkeeper
// (see ReleaseSocketsLate).
var keepSockets atomic.Bool

// ReleaseSocketsLate makes the kernel release every netfilter socket this
// process opens after the process has exited, not in its own closes (see
// internal/fdkeeper): releasing a netfilter socket waits out the RCU grace
// period of any pending nf_tables deletion, ours or a neighbour's, 6–15 ms
// each time, and a DEL's own deletions made each later close wait. Plugin
// mains call it (it costs one sendmsg per socket); a long-lived process must
// not, since its sockets would stay open until it exits.
func ReleaseSocketsLate() { keepSockets.Store(true) }

// keepSocket hands a new netfilter socket's release to the fdkeeper when
// ReleaseSocketsLate was called. If the helper cannot run, the socket is
// used anyway, and its close waits as it would without it.
func keepSocket(nl *netlink.Conn) error {
	if !keepSockets.Load() {
		return nil
	}
	rc, err := nl.SyscallConn()
	if err != nil {
		return nil
	}
	_ = fdkeeper.KeepRaw(rc)
	return nil
}

// newOpConn returns a lasting connection for one ADD: its look-ups
// (chainHolds) and its transaction share one netlink socket, and a raw
// netfilter socket (nl) serves its element GETs: two sockets per ADD
// rather than one per look-up. done closes both.
func newOpConn() (c *nftables.Conn, nl *netlink.Conn, done func(), err error) {
	c, err = nftables.New(nftables.AsLasting(), nftables.WithSockOptions(keepSocket))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("nftables: %w", err)
	}
	nl, err = dialNetfilter()
	if err != nil {
		c.CloseLasting()
		return nil, nil, nil, err
	}
	return c, nl, func() { nl.Close(); c.CloseLasting() }, nil
}

// isNotExist reports whether a netlink error means the object (table, set,
// element) is not there: DEL treats that as done.
func isNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) ||
		(err != nil && strings.Contains(err.Error(), "no such file or directory"))
}

// tableConn returns a connection when berth's table exists, nil when it
// does not: DEL, GC and listing then have nothing to do and create nothing.
func tableConn() (*nftables.Conn, error) {
	c, err := newConn()
	if err != nil {
		return nil, err
	}
	ok, err := tableExists(c)
	if err != nil || !ok {
		return nil, err
	}
	return c, nil
}

// tableExists asks the kernel for the table alone (one small GET, not a dump
// of the ruleset), so DEL without a prior ADD creates nothing.
func tableExists(c *nftables.Conn) (bool, error) {
	_, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if err == nil {
		return true, nil
	}
	if isNotExist(err) {
		return false, nil
	}
	return false, fmt.Errorf("nftables: looking up table inet %s: %w", TableName, err)
}

// family is one IP version's view of the expressions rules need.
type family struct {
	nfproto byte
	addrLen uint32
	// saddrOff/daddrOff are offsets in the network header.
	saddrOff, daddrOff uint32
	addrType           nftables.SetDatatype
	multicast          *net.IPNet
	natFamily          uint32
}

var (
	v4 = family{unix.NFPROTO_IPV4, 4, 12, 16, nftables.TypeIPAddr, mustCIDR("224.0.0.0/4"), unix.NFPROTO_IPV4}
	v6 = family{unix.NFPROTO_IPV6, 16, 8, 24, nftables.TypeIP6Addr, mustCIDR("ff00::/8"), unix.NFPROTO_IPV6}
)

func familyOf(ip net.IP) family {
	if ip.To4() != nil {
		return v4
	}
	return v6
}

// addrBytes is ip in the family's wire length.
func (f family) addrBytes(ip net.IP) []byte {
	if f.addrLen == 4 {
		return ip.To4()
	}
	return ip.To16()
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// matchProto: meta nfproto <f>. Needed in an inet table before touching
// the network header.
func (f family) matchProto() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
	}
}

// loadAddr: load saddr (src) or daddr into reg.
func (f family) loadAddr(src bool, reg uint32) expr.Any {
	off := f.daddrOff
	if src {
		off = f.saddrOff
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: f.addrLen}
}

// matchPrefix: ip daddr|saddr <n> (already loaded in reg 1).
func (f family) matchPrefix(n *net.IPNet) []expr.Any {
	mask := []byte(n.Mask)
	if len(mask) != int(f.addrLen) {
		mask = []byte(net.CIDRMask(prefixLen(n), int(f.addrLen)*8))
	}
	return []expr.Any{
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: f.addrLen, Mask: mask, Xor: make([]byte, f.addrLen)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: f.addrBytes(n.IP.Mask(n.Mask))},
	}
}

func prefixLen(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// verdictChain returns the chain a verdict-map element jumps to. The
// library leaves a dumped element's verdict undecoded in Val: the nested
// NFTA_VERDICT_CODE / NFTA_VERDICT_CHAIN attributes.
func verdictChain(e nftables.SetElement) string {
	if e.VerdictData != nil {
		return e.VerdictData.Chain
	}
	ad, err := netlink.NewAttributeDecoder(e.Val)
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.NFTA_VERDICT_CHAIN {
			return ad.String()
		}
	}
	return ""
}

// upsert queues els with their comments, replacing elements with the same
// keys left by an attachment that never got its DEL: add + delete + add in
// one transaction (the first add makes the delete valid, and fails when an
// element under the key has other data: another attachment's). The delete
// costs the transaction an RCU grace period (~14 ms), so ADDs use it only
// for an element found under another tag (see addOwned).
func upsert(c *nftables.Conn, s *nftables.Set, els ...nftables.SetElement) error {
	for _, step := range []func(*nftables.Set, []nftables.SetElement) error{c.SetAddElements, c.SetDeleteElements, c.SetAddElements} {
		if err := step(s, els); err != nil {
			return fmt.Errorf("nftables: %s element: %w", s.Name, err)
		}
	}
	return nil
}

// addOwned queues els, each carrying tg as its comment, deleting nothing
// where nothing needs removing: each key is looked up first (one GET, no
// dump). An absent element, or one already carrying tg, is simply added
// (adding without NLM_F_EXCL an element with the same data is a no-op; with
// other data the transaction fails, as it must when the key is another
// attachment's). Only an element with the same key under another tag, left
// by an attachment that never got its DEL, is replaced with upsert.
func addOwned(c *nftables.Conn, nl *netlink.Conn, s *nftables.Set, tg string, els ...nftables.SetElement) error {
	for _, el := range els {
		comment, found, err := elementComment(nl, keyed{s, el.Key})
		if err != nil {
			return err
		}
		if err := addLooked(c, s, tg, el, comment, found); err != nil {
			return err
		}
	}
	return nil
}

// addLooked is addOwned of one element already looked up: found, with
// comment, or not.
func addLooked(c *nftables.Conn, s *nftables.Set, tg string, el nftables.SetElement, comment string, found bool) error {
	if found && comment != tg {
		return upsert(c, s, el)
	}
	if err := c.SetAddElements(s, []nftables.SetElement{el}); err != nil {
		return fmt.Errorf("nftables: %s element: %w", s.Name, err)
	}
	return nil
}

// chainHolds reports whether the chain exists with exactly n rules, i.e.
// an earlier ADD built its fixed rules. ADDs then skip rebuilding them:
// the rebuild is a flush (a deletion of rules) and a re-add, and a
// transaction that deletes waits for a grace period. When the chain is
// missing or its rules are not the expected number (first ADD, an admin's
// edit), the ADD flushes and re-adds them in its transaction as before,
// so concurrent first ADDs still converge on one copy. One dump of one
// small chain, never of a set.
func chainHolds(c *nftables.Conn, t *nftables.Table, chain string, n int) bool {
	if n == 0 {
		// A rules dump filtered by a missing chain is empty, not an
		// error: an empty chain must be asked for by name (one GET).
		// Taking a missing reference chain for an empty one made the
		// first ADD on a network commit a jump to nothing, fail with
		// ENOENT, and pay the aborted transaction's grace period (13 ms)
		// before retrying: every container alone on its network paid it.
		if _, err := c.ListChain(&nftables.Table{Name: t.Name, Family: t.Family}, chain); err != nil {
			return false
		}
	}
	rules, err := c.GetRules(&nftables.Table{Name: t.Name, Family: t.Family}, &nftables.Chain{Name: chain, Table: t})
	return err == nil && len(rules) == n
}
