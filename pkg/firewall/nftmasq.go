package firewall

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// nftMasq is the nftables Masquerader. Layout in table inet berth:
//
//	map masq4 { type ipv4_addr : verdict }     # container IP -> jump masq-<subnet>
//	map masq6 { type ipv6_addr : verdict }
//	chain masq-postrouting { type nat hook postrouting priority srcnat
//	    meta nfproto ipv4 ip saddr vmap @masq4
//	    meta nfproto ipv6 ip6 saddr vmap @masq6 }
//	chain masq-10.88.0.0-16 {                 # one per container subnet
//	    ip daddr 10.88.0.0/16 return
//	    ip daddr 224.0.0.0/4 return
//	    masquerade }
//
// A packet costs one hash lookup whatever the number of containers, and an
// ADD or DEL is one transaction adding or removing map elements. The fixed
// rules are built (flush chain + add) inside the ADD's transaction when
// their chain lacks them (chainHolds), because adding a rule is not
// idempotent; their content depends only on the subnet, so concurrent ADDs
// from separate processes (serialized by the kernel) always leave the same
// rules. Once they are there an ADD deletes nothing.
type nftMasq struct{}

const (
	masqPostrouting = "masq-postrouting"
	masqMap4        = "masq4"
	masqMap6        = "masq6"
	// masqChainRules is the number of rules of a subnet chain.
	masqChainRules = 3
)

func masqMapName(f family) string {
	if f.addrLen == 4 {
		return masqMap4
	}
	return masqMap6
}

// masqChainName is the per-subnet chain: "masq-10.88.0.0-16",
// "masq-fd00__-64" (no '/' or ':' so nft prints it as a plain identifier).
func masqChainName(n *net.IPNet) string {
	s := strings.NewReplacer("/", "-", ":", "_").Replace(n.String())
	return "masq-" + s
}

func masqMap(t *nftables.Table, f family) *nftables.Set {
	return &nftables.Set{Table: t, Name: masqMapName(f), KeyType: f.addrType, DataType: nftables.TypeVerdict, IsMap: true}
}

// ensureBase adds the table, both maps and the postrouting chain with its
// two lookups to the transaction.
func (nftMasq) ensureBase(c *nftables.Conn) (*nftables.Table, map[byte]*nftables.Set, error) {
	t := c.AddTable(nftTable())
	maps := map[byte]*nftables.Set{}
	for _, f := range []family{v4, v6} {
		s := masqMap(t, f)
		if err := c.AddSet(s, nil); err != nil {
			return nil, nil, fmt.Errorf("nftables: map %s: %w", s.Name, err)
		}
		maps[f.nfproto] = s
	}
	// Not even re-added when it is there: re-adding an existing chain
	// is an update that waits for a grace period too (see chainHolds).
	if chainHolds(c, t, masqPostrouting, 2) {
		return t, maps, nil
	}
	post := c.AddChain(&nftables.Chain{
		Name: masqPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	c.FlushChain(post)
	for _, f := range []family{v4, v6} {
		s := maps[f.nfproto]
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: concat(f.matchProto(), []expr.Any{
			f.loadAddr(true, 1),
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, IsDestRegSet: true, DestRegister: 0},
		})})
	}
	return t, maps, nil
}

// ensureSubnetChain (re)builds the chain for one subnet in the transaction,
// unless it holds its rules already (and force is off): then the
// transaction does not name the chain at all, so if a DEL's teardown
// deletes it before this commit, the element's jump fails the transaction
// (ENOENT) instead of landing in an empty chain, and AddMasq retries with
// force.
func (nftMasq) ensureSubnetChain(c *nftables.Conn, t *nftables.Table, n *net.IPNet, force bool) string {
	f := familyOf(n.IP)
	name := masqChainName(n)
	if !force && chainHolds(c, t, name, masqChainRules) {
		return name
	}
	ch := c.AddChain(&nftables.Chain{Name: name, Table: t})
	c.FlushChain(ch)
	for _, dst := range []*net.IPNet{n, f.multicast} {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: concat(f.matchProto(),
			[]expr.Any{f.loadAddr(false, 1)}, f.matchPrefix(dst),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}})})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{&expr.Masq{}}})
	return ch.Name
}

func subnetOf(ipn *net.IPNet) *net.IPNet {
	return &net.IPNet{IP: ipn.IP.Mask(ipn.Mask), Mask: ipn.Mask}
}

func (m nftMasq) AddMasq(ms Masq) error {
	if len(ms.IPs) == 0 {
		return nil
	}
	err := m.addMasq(ms, false)
	if isNotExist(err) {
		// A subnet chain went between the look and the commit.
		err = m.addMasq(ms, true)
	}
	return err
}

func (m nftMasq) addMasq(ms Masq, force bool) error {
	c, nl, done, err := newOpConn()
	if err != nil {
		return err
	}
	defer done()
	t, maps, err := m.ensureBase(c)
	if err != nil {
		return err
	}
	tg := tag(ms.Network, ms.ContainerID, ms.IfName)
	for _, ipn := range ms.IPs {
		f := familyOf(ipn.IP)
		chain := m.ensureSubnetChain(c, t, subnetOf(ipn), force)
		el := []nftables.SetElement{{
			Key:         f.addrBytes(ipn.IP),
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: chain},
			Comment:     tg,
		}}
		// addOwned stores this attachment's tag even if an element for
		// the same IP was left behind by an attachment that never got its
		// DEL, and deletes nothing otherwise.
		if err := addOwned(c, nl, maps[f.nfproto], tg, el...); err != nil {
			return fmt.Errorf("masquerade of %s: %w", ipn.IP, err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: adding masquerade for %s: %w", ipsString(ms.IPs), err)
	}
	return nil
}

func ipsString(ips []*net.IPNet) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}

// elements dumps one map, returning nil when the table or map is missing.
func dumpElements(c *nftables.Conn, s *nftables.Set) ([]nftables.SetElement, error) {
	els, err := c.GetSetElements(s)
	if err != nil {
		if isNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("nftables: listing %s: %w", s.Name, err)
	}
	return els, nil
}

// delElements removes the elements of sets that carry tag tg, and only
// those: a key alone says nothing about the owner, since a freed address
// (or port) may already belong to another attachment whose element has the
// same key, and a late or repeated DEL must leave that one alone. Without
// the table there is nothing to do, and nothing is created.
func delElements(sets []*nftables.Set, tg string) error {
	c, err := tableConn()
	if err != nil || c == nil {
		return err
	}
	return deleteTagged(c, sets, func(s string) bool { return s == tg })
}

// deleteTagged removes the elements of sets whose tag satisfies drop, in one
// transaction per attempt: a dump of each set, then the deletion of the
// matching keys. An element that went between the two (a concurrent DEL of
// the same attachment) fails the transaction: it is dumped again.
func deleteTagged(c *nftables.Conn, sets []*nftables.Set, drop func(tag string) bool) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			// A failed transaction leaves the connection's batch unusable.
			if c, err = newConn(); err != nil {
				return err
			}
		}
		if err = deleteTaggedOnce(c, sets, drop); err == nil || !isNotExist(err) {
			return err
		}
	}
	return err
}

func deleteTaggedOnce(c *nftables.Conn, sets []*nftables.Set, drop func(tag string) bool) error {
	n := 0
	for _, s := range sets {
		els, err := dumpElements(c, s)
		if err != nil {
			return err
		}
		var del []nftables.SetElement
		for _, e := range els {
			if drop(e.Comment) {
				del = append(del, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd})
			}
		}
		if len(del) > 0 {
			if err := c.SetDeleteElements(s, del); err != nil {
				return fmt.Errorf("nftables: %s: %w", s.Name, err)
			}
			n += len(del)
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: deleting %d elements: %w", n, err)
	}
	return nil
}

func (m nftMasq) DelMasq(ms Masq) error {
	// By tag, whatever ms.IPs say: prevResult's addresses may be another
	// attachment's by now.
	t := nftTable()
	sets := []*nftables.Set{masqMap(t, v4), masqMap(t, v6)}
	tg := tag(ms.Network, ms.ContainerID, ms.IfName)
	var ks []keyed
	for _, ipn := range ms.IPs {
		f := familyOf(ipn.IP)
		ks = append(ks, keyed{masqMap(t, f), f.addrBytes(ipn.IP)})
	}
	var err error
	if len(ks) > 0 {
		// One GET per address: cost independent of the number of
		// containers.
		err = delOwned(ks, sets, tg)
	} else {
		err = delElements(sets, tg)
	}
	if err != nil {
		return err
	}
	// Then the subnet's chain, unless another element still jumps to it.
	var chains []string
	for _, ipn := range ms.IPs {
		chains = append(chains, masqChainName(subnetOf(ipn)))
	}
	if len(chains) == 0 {
		// Without addresses the subnet is unknown: try them all.
		return dropUnusedMasqChains()
	}
	return dropUnusedChains(chains, masqChainRules)
}

// dropUnusedMasqChains deletes every subnet chain no element jumps to.
func dropUnusedMasqChains() error {
	c, err := newConn()
	if err != nil {
		return err
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("nftables: listing chains: %w", err)
	}
	var unused []string
	for _, ch := range chains {
		if ch.Table.Name == TableName && strings.HasPrefix(ch.Name, "masq-") && ch.Name != masqPostrouting {
			unused = append(unused, ch.Name)
		}
	}
	return dropUnusedChains(unused, masqChainRules)
}

func (m nftMasq) CheckMasq(ms Masq) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	t := nftTable()
	tg := tag(ms.Network, ms.ContainerID, ms.IfName)
	have := map[string]nftables.SetElement{}
	for _, f := range []family{v4, v6} {
		els, err := dumpElements(c, masqMap(t, f))
		if err != nil {
			return err
		}
		for _, e := range els {
			have[string(e.Key)] = e
		}
	}
	var missing []string
	for _, ipn := range ms.IPs {
		f := familyOf(ipn.IP)
		e, ok := have[string(f.addrBytes(ipn.IP))]
		want := masqChainName(subnetOf(ipn))
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s: no element in map %s", ipn.IP, masqMapName(f)))
		case e.Comment != tg:
			missing = append(missing, fmt.Sprintf("%s: element belongs to %q, not %q", ipn.IP, e.Comment, tg))
		case verdictChain(e) != want:
			missing = append(missing, fmt.Sprintf("%s: element does not jump to %s", ipn.IP, want))
		default:
			if _, err := c.ListChain(t, want); err != nil {
				missing = append(missing, fmt.Sprintf("%s: chain %s: %v", ipn.IP, want, err))
			}
		}
	}
	if len(missing) > 0 {
		return errors.New("masquerade missing: " + strings.Join(missing, "; "))
	}
	return nil
}

func (m nftMasq) GCMasq(network string, valid map[cni.Attachment]bool) error {
	c, err := tableConn()
	if err != nil || c == nil {
		return err
	}
	keep := validTags(network, valid)
	net := shorten(network)
	t := nftTable()
	if err := deleteTagged(c, []*nftables.Set{masqMap(t, v4), masqMap(t, v6)}, func(s string) bool {
		return tagNetwork(s) == net && !keep[s]
	}); err != nil {
		return err
	}
	return dropUnusedMasqChains()
}
