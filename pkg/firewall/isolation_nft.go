package firewall

import (
	"errors"
	"fmt"
	"strings"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// nftIso is the nftables Isolator. Layout:
//
//	table inet berth {
//	    set fw-allow4 { type ipv4_addr }          # container IPs, comment = tag
//	    set fw-allow6 { type ipv6_addr }
//	    set fw-bridges { type ifname }            # bridges with a policy
//	    set fw-same { type ifname . ifname }      # br . br for each of them
//	    chain fw-admin { }                        # the admin's, never flushed
//	    chain fw-forward { type filter hook forward priority filter
//	        jump fw-admin
//	        iifname . oifname @fw-same return     # within one bridge
//	        iifname @fw-bridges oifname @fw-bridges drop   # across bridges
//	        ip daddr @fw-allow4 ct state established,related accept
//	        ip saddr @fw-allow4 accept
//	        (same for ip6) } }
//	table bridge berth {
//	    set fw-icc-off { type ifname }            # bridge ports of isolated containers
//	    chain fw-forward { type filter hook forward priority filter
//	        iifname @fw-icc-off drop } }
//
// Why a bridge-family table for icc: frames between two ports of one bridge
// never reach the IP forward hook unless br_netfilter is loaded and
// bridge-nf-call-iptables is on. That is a node-wide switch (every bridged
// packet of the node then goes through the IP hooks) that berth should not
// flip, and that may be off. The bridge family's forward hook sees exactly
// port-to-port frames, whatever br_netfilter does; frames to the bridge
// itself (the gateway, the host, DNAT'd published ports coming back) go
// through its input/output hooks and are untouched. This kernel lacks
// `meta ibrname` (nft_meta_bridge), so ports are matched by name, one set
// element per isolated container.
//
// When br_netfilter is on, bridged IP packets also traverse the inet forward
// chain with iifname = oifname = the bridge: the fw-same return keeps the
// cross-bridge drop from catching them.
//
// Every ADD is one transaction; packets cost set lookups, so neither grows
// with the number of containers.
type nftIso struct{}

const (
	isoForward = "fw-forward"
	isoAdmin   = "fw-admin"
	isoAllow4  = "fw-allow4"
	isoAllow6  = "fw-allow6"
	isoBridges = "fw-bridges"
	isoSame    = "fw-same"
	isoIcc     = "fw-icc-off"
)

func isoBridgeTable() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge}
}

func isoAllowSet(t *nftables.Table, f family) *nftables.Set {
	name := isoAllow6
	if f.addrLen == 4 {
		name = isoAllow4
	}
	return &nftables.Set{Table: t, Name: name, KeyType: f.addrType}
}

func isoBridgesSet(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: isoBridges, KeyType: nftables.TypeIFName}
}

func isoSameSet(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: isoSame, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIFName)}
}

func isoIccSet(bt *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: bt, Name: isoIcc, KeyType: nftables.TypeIFName}
}

// ifKey is an interface name as the kernel compares it: IFNAMSIZ bytes,
// zero padded.
func ifKey(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

func lookup(reg uint32, s *nftables.Set) *expr.Lookup {
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID}
}

var (
	accept = &expr.Verdict{Kind: expr.VerdictAccept}
	drop   = &expr.Verdict{Kind: expr.VerdictDrop}
)

// ctReply: ct state established,related.
func ctReply() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

type isoSets struct {
	allow   map[byte]*nftables.Set
	bridges *nftables.Set
	same    *nftables.Set
}

// ensureInet adds the inet table's sets and chains to the transaction and
// rebuilds fw-forward's fixed rules (flush + add: adding a rule is not
// idempotent, and the rules never depend on the attachment, so concurrent
// ADDs always leave the same ones).
func (nftIso) ensureInet(c *nftables.Conn) (*isoSets, error) {
	t := c.AddTable(nftTable())
	s := &isoSets{allow: map[byte]*nftables.Set{}, bridges: isoBridgesSet(t), same: isoSameSet(t)}
	for _, f := range []family{v4, v6} {
		s.allow[f.nfproto] = isoAllowSet(t, f)
	}
	for _, set := range []*nftables.Set{s.allow[v4.nfproto], s.allow[v6.nfproto], s.bridges, s.same} {
		if err := c.AddSet(set, nil); err != nil {
			return nil, fmt.Errorf("nftables: set %s: %w", set.Name, err)
		}
	}
	if chainHolds(c, t, isoForward, 7) {
		// Built by an earlier ADD, with fw-admin (its first rule jumps
		// there): nothing deleted, no chain re-added (chainHolds).
		return s, nil
	}
	// Created if missing, never flushed: its rules are the admin's.
	c.AddChain(&nftables.Chain{Name: isoAdmin, Table: t})
	fwd := c.AddChain(&nftables.Chain{Name: isoForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	c.FlushChain(fwd)
	rules := [][]expr.Any{
		{&expr.Verdict{Kind: expr.VerdictJump, Chain: isoAdmin}},
		{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 2},
			lookup(1, s.same),
			&expr.Verdict{Kind: expr.VerdictReturn},
		},
		{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, lookup(1, s.bridges),
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, lookup(1, s.bridges),
			drop,
		},
	}
	for _, f := range []family{v4, v6} {
		set := s.allow[f.nfproto]
		rules = append(rules,
			concat(f.matchProto(), []expr.Any{f.loadAddr(false, 1), lookup(1, set)}, ctReply(), []expr.Any{accept}),
			concat(f.matchProto(), []expr.Any{f.loadAddr(true, 1), lookup(1, set), accept}),
		)
	}
	for _, r := range rules {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: r})
	}
	return s, nil
}

// ensureBridge adds the bridge-family table, its set and chain.
func (nftIso) ensureBridge(c *nftables.Conn) (*nftables.Set, error) {
	bt := c.AddTable(isoBridgeTable())
	s := isoIccSet(bt)
	if err := c.AddSet(s, nil); err != nil {
		return nil, fmt.Errorf("nftables: set bridge %s: %w", s.Name, err)
	}
	if chainHolds(c, bt, isoForward, 1) {
		return s, nil
	}
	fwd := c.AddChain(&nftables.Chain{Name: isoForward, Table: bt, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-200)})
	c.FlushChain(fwd)
	c.AddRule(&nftables.Rule{Table: bt, Chain: fwd, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, lookup(1, s), drop,
	}})
	return s, nil
}

func (n nftIso) AddIsolation(a Isolation) error {
	if err := a.Validate(); err != nil {
		return err
	}
	err := n.addIsolation(a, false)
	if isNotExist(err) {
		// The network's reference chain went between the look and the
		// commit (its last attachment's DEL): again, creating it.
		err = n.addIsolation(a, true)
	}
	return err
}

func (n nftIso) addIsolation(a Isolation, force bool) error {
	c, nl, done, err := newOpConn()
	if err != nil {
		return err
	}
	defer done()
	s, err := n.ensureInet(c)
	if err != nil {
		return err
	}
	tg := tag(a.Network, a.ContainerID, a.IfName)
	for _, ipn := range a.IPs {
		f := familyOf(ipn.IP)
		if err := addOwned(c, nl, s.allow[f.nfproto], tg, nftables.SetElement{Key: f.addrBytes(ipn.IP), Comment: tg}); err != nil {
			return err
		}
	}
	if a.Policy == PolicySameBridge || a.Policy == PolicyIsolated {
		// Shared by every container of the network: plain add (an
		// existing element is fine), comment = the network for GC.
		net := shorten(a.Network)
		if err := c.SetAddElements(s.bridges, []nftables.SetElement{{Key: ifKey(a.Bridge), Comment: net}}); err != nil {
			return fmt.Errorf("nftables: %s element: %w", isoBridges, err)
		}
		key := append(ifKey(a.Bridge), ifKey(a.Bridge)...)
		if err := c.SetAddElements(s.same, []nftables.SetElement{{Key: key, Comment: net}}); err != nil {
			return fmt.Errorf("nftables: %s element: %w", isoSame, err)
		}
	}
	if a.Policy == PolicyIsolated {
		icc, err := n.ensureBridge(c)
		if err != nil {
			return err
		}
		if err := addOwned(c, nl, icc, tg, nftables.SetElement{Key: ifKey(a.HostVeth), Comment: tg}); err != nil {
			return err
		}
	}
	// The attachment's reference keeps the network's bridge entries (see
	// netstate.go).
	if err := addRef(c, c.AddTable(nftTable()), isoRefs, isoNetChain, a.Network, tg, force); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: adding firewall rules for %s: %w", tg, err)
	}
	return nil
}

func bridgeTableExists(c *nftables.Conn) (bool, error) {
	_, err := c.ListTableOfFamily(TableName, nftables.TableFamilyBridge)
	if err == nil {
		return true, nil
	}
	if isNotExist(err) {
		return false, nil
	}
	return false, fmt.Errorf("nftables: looking up table bridge %s: %w", TableName, err)
}

// isoTablesExist reports which of isolation's two tables (inet and bridge
// berth) are there, so DEL and GC touch only those and create neither.
func isoTablesExist(c *nftables.Conn) (inet, br bool, err error) {
	if inet, err = tableExists(c); err != nil {
		return false, false, err
	}
	if br, err = bridgeTableExists(c); err != nil {
		return false, false, err
	}
	return inet, br, nil
}

func (n nftIso) DelIsolation(a Isolation) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	inet, br, err := isoTablesExist(c)
	if err != nil {
		return err
	}
	if !inet && !br {
		return nil
	}
	// Only elements carrying this attachment's tag: prevResult's
	// addresses and veth name may be another attachment's by now.
	tg := tag(a.Network, a.ContainerID, a.IfName)
	tagged, shared := isoSetsOf(inet, br)
	if len(a.IPs) > 0 && (!br || a.HostVeth != "") {
		// The keys are known: one GET each, cost independent of the
		// number of containers.
		ks := []keyed{{refMap(isoRefs), refKey(tg)}}
		for _, ipn := range a.IPs {
			f := familyOf(ipn.IP)
			ks = append(ks, keyed{isoAllowSet(nftTable(), f), f.addrBytes(ipn.IP)})
		}
		if br {
			ks = append(ks, keyed{isoIccSet(isoBridgeTable()), ifKey(a.HostVeth)})
		}
		err = delOwned(ks, tagged, tg)
	} else {
		err = deleteTagged(c, tagged, func(s string) bool { return s == tg })
	}
	if err != nil || !inet {
		return err
	}
	// The network's bridge entries go with its last attachment.
	return dropNetwork(isoNetChain, a.Network, shared)
}

// isoSetsOf are the isolation sets in the tables that exist: those of
// attachments (tagged) and those of networks (shared, comment = network).
func isoSetsOf(inet, br bool) (tagged, shared []*nftables.Set) {
	t := nftTable()
	if inet {
		tagged = append(tagged, isoAllowSet(t, v4), isoAllowSet(t, v6), refMap(isoRefs))
		shared = append(shared, isoBridgesSet(t), isoSameSet(t))
	}
	if br {
		tagged = append(tagged, isoIccSet(isoBridgeTable()))
	}
	return tagged, shared
}

func (nftIso) CheckIsolation(a Isolation) error {
	if err := a.Validate(); err != nil {
		return err
	}
	c, err := newConn()
	if err != nil {
		return err
	}
	t := nftTable()
	tg := tag(a.Network, a.ContainerID, a.IfName)
	var missing []string
	if _, err := c.ListChain(t, isoForward); err != nil {
		missing = append(missing, fmt.Sprintf("chain inet %s %s: %v", TableName, isoForward, err))
	}
	elems := func(s *nftables.Set) map[string]string {
		els, err := dumpElements(c, s)
		if err != nil {
			missing = append(missing, err.Error())
		}
		m := map[string]string{}
		for _, e := range els {
			m[string(e.Key)] = e.Comment
		}
		return m
	}
	have := map[byte]map[string]string{v4.nfproto: elems(isoAllowSet(t, v4)), v6.nfproto: elems(isoAllowSet(t, v6))}
	for _, ipn := range a.IPs {
		f := familyOf(ipn.IP)
		got, ok := have[f.nfproto][string(f.addrBytes(ipn.IP))]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s: not in set %s", ipn.IP, isoAllowSet(t, f).Name))
		case got != tg:
			missing = append(missing, fmt.Sprintf("%s: element belongs to %q, not %q", ipn.IP, got, tg))
		}
	}
	if a.Policy == PolicySameBridge || a.Policy == PolicyIsolated {
		if _, ok := elems(isoBridgesSet(t))[string(ifKey(a.Bridge))]; !ok {
			missing = append(missing, fmt.Sprintf("bridge %s: not in set %s", a.Bridge, isoBridges))
		}
	}
	if a.Policy == PolicyIsolated {
		if got, ok := elems(isoIccSet(isoBridgeTable()))[string(ifKey(a.HostVeth))]; !ok || got != tg {
			missing = append(missing, fmt.Sprintf("port %s: not in bridge set %s for %s", a.HostVeth, isoIcc, tg))
		}
	}
	if len(missing) > 0 {
		return errors.New("firewall rules missing: " + strings.Join(missing, "; "))
	}
	return nil
}

func (nftIso) GCIsolation(network string, valid map[cni.Attachment]bool) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	inet, br, err := isoTablesExist(c)
	if err != nil {
		return err
	}
	tagged, shared := isoSetsOf(inet, br)
	if len(tagged) == 0 {
		return nil
	}
	keep := validTags(network, valid)
	net := shorten(network)
	if err := deleteTagged(c, tagged, func(s string) bool { return tagNetwork(s) == net && !keep[s] }); err != nil {
		return err
	}
	if !inet {
		return nil
	}
	return dropNetwork(isoNetChain, network, shared)
}
