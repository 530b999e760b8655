package firewall

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// nftPorts is the nftables PortMapper. Layout in table inet berth:
//
//	map ports4        { type inet_proto . inet_service : ipv4_addr . inet_service }
//	map hostip-ports4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//	set masqall4      { type ipv4_addr . inet_proto . inet_service }   # masqAll, container side
//	map ports-standby4 { type ipv6_addr . ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//	set hairpin4      { type ipv4_addr; flags interval }             # subnets of mapped containers
//	(and the same five for IPv6)
//	chain ports-prerouting { type nat hook prerouting priority dstnat; fib daddr type local jump ports-dnat }
//	chain ports-output     { type nat hook output priority dstnat; fib daddr type local jump ports-dnat }
//	chain ports-dnat {
//	    meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @hostip-ports4
//	    meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4
//	    (ipv6 likewise) }
//	chain ports-postrouting { type nat hook postrouting priority srcnat
//	    ct status dnat ip saddr 127.0.0.0/8 masquerade        # localhost
//	    ct status dnat ip saddr @hairpin4 masquerade          # container -> host address -> container
//	    ct status dnat ip daddr . meta l4proto . th dport @masqall4 masquerade
//	    (ipv6 likewise, without localhost) }
//
// A packet to a host port costs one or two hash lookups whatever the number
// of mappings; an ADD or DEL is one transaction of map elements tagged with
// the attachment (see tag). A host port already published by another
// attachment makes the kernel refuse the element (same key, other data), so
// the whole transaction, and the ADD, fails with nothing changed.
//
// The same container on another network (Podman hands a container's
// mappings to every network it joins) is no conflict: its element waits in
// ports-standby4/6, keyed by a hash of its tag (the ipv6_addr field is
// only a carrier of 16 bytes, as in the reference maps) and the host side
// (host address 0 for every address), until the serving attachment goes;
// its DEL (or GC) then moves it into the port map in the same transaction
// (see nftstandby.go).
type nftPorts struct{}

const (
	portsPrerouting  = "ports-prerouting"
	portsOutput      = "ports-output"
	portsDNAT        = "ports-dnat"
	portsPostrouting = "ports-postrouting"
)

var (
	protoService = []nftables.SetDatatype{nftables.TypeInetProto, nftables.TypeInetService}
	ctStatusDNAT = binaryutil.NativeEndian.PutUint32(0x20) // IPS_DST_NAT
	rtnLocal     = binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)
	localhost4   = mustCIDR("127.0.0.0/8")
)

func (f family) suffix() string {
	if f.addrLen == 4 {
		return "4"
	}
	return "6"
}

func mustConcat(ts ...nftables.SetDatatype) nftables.SetDatatype {
	t, err := nftables.ConcatSetType(ts...)
	if err != nil {
		panic(err)
	}
	return t
}

// portsMap is ports4/6 (any host address) or hostip-ports4/6.
func portsMap(t *nftables.Table, f family, specific bool) *nftables.Set {
	key, name := mustConcat(protoService...), "ports"+f.suffix()
	if specific {
		key, name = mustConcat(append([]nftables.SetDatatype{f.addrType}, protoService...)...), "hostip-ports"+f.suffix()
	}
	return &nftables.Set{Table: t, Name: name, IsMap: true, Concatenation: true, KeyType: key,
		DataType: mustConcat(f.addrType, nftables.TypeInetService)}
}

func masqAllSet(t *nftables.Table, f family) *nftables.Set {
	return &nftables.Set{Table: t, Name: "masqall" + f.suffix(), Concatenation: true,
		KeyType: mustConcat(append([]nftables.SetDatatype{f.addrType}, protoService...)...)}
}

func hairpinSet(t *nftables.Table, f family) *nftables.Set {
	return &nftables.Set{Table: t, Name: "hairpin" + f.suffix(), Interval: true, KeyType: f.addrType}
}

// taggedSets are the sets whose elements belong to one attachment.
func taggedSets(t *nftables.Table) []*nftables.Set {
	var out []*nftables.Set
	for _, f := range []family{v4, v6} {
		out = append(out, portsMap(t, f, true), portsMap(t, f, false), masqAllSet(t, f), standbyMap(t, f))
	}
	return append(out, refMap(portsRefs))
}

// Expressions loading the lookup keys into consecutive 32-bit registers
// (NFT_REG32_00 = 8), the layout of a concatenated key.
func loadAddrProtoPort(f family, daddr bool) []expr.Any {
	reg := uint32(8)
	var out []expr.Any
	if daddr {
		out = append(out, f.loadAddr(false, reg))
		reg += f.addrLen / 4
	}
	return append(out,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg},
		&expr.Payload{DestRegister: reg + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
}

func ctIsDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ctStatusDNAT, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

type portsObjs struct {
	maps    map[string]*nftables.Set // by name
	table   *nftables.Table
	hairpin map[byte]*nftables.Set
}

// ensureBase adds the table, sets, maps and chains, building the fixed
// rules of a chain that lacks them (flush + add in the same transaction,
// so concurrent callers always leave one copy of them); a chain that holds
// them is left alone, so a later ADD deletes nothing (chainHolds).
func (nftPorts) ensureBase(c *nftables.Conn) (*portsObjs, error) {
	t := c.AddTable(nftTable())
	o := &portsObjs{maps: map[string]*nftables.Set{}, table: t, hairpin: map[byte]*nftables.Set{}}
	for _, f := range []family{v4, v6} {
		for _, s := range []*nftables.Set{portsMap(t, f, true), portsMap(t, f, false), masqAllSet(t, f), hairpinSet(t, f), standbyMap(t, f)} {
			if err := c.AddSet(s, nil); err != nil {
				return nil, fmt.Errorf("nftables: set %s: %w", s.Name, err)
			}
			o.maps[s.Name] = s
		}
		o.hairpin[f.nfproto] = o.maps["hairpin"+f.suffix()]
	}
	if chainHolds(c, t, portsDNAT, 4) && chainHolds(c, t, portsPrerouting, 1) && chainHolds(c, t, portsOutput, 1) && chainHolds(c, t, portsPostrouting, 5) {
		return o, nil
	}
	dnat := c.AddChain(&nftables.Chain{Name: portsDNAT, Table: t})
	c.FlushChain(dnat)
	for _, f := range []family{v4, v6} {
		for _, specific := range []bool{true, false} {
			m := o.maps[portsMap(t, f, specific).Name]
			c.AddRule(&nftables.Rule{Table: t, Chain: dnat, Exprs: concat(f.matchProto(), loadAddrProtoPort(f, specific), []expr.Any{
				&expr.Lookup{SourceRegister: 8, SetName: m.Name, SetID: m.ID, IsDestRegSet: true, DestRegister: 8},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(f.nfproto), RegAddrMin: 8, RegProtoMin: 8 + f.addrLen/4, Specified: true},
			})})
		}
	}
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{portsPrerouting, nftables.ChainHookPrerouting}, {portsOutput, nftables.ChainHookOutput}} {
		ch := c.AddChain(&nftables.Chain{Name: h.name, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: h.hook, Priority: nftables.ChainPriorityNATDest})
		c.FlushChain(ch)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: rtnLocal},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: portsDNAT},
		}})
	}
	post := c.AddChain(&nftables.Chain{Name: portsPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.FlushChain(post)
	masq := []expr.Any{&expr.Masq{}}
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: concat(v4.matchProto(), ctIsDNAT(),
		[]expr.Any{v4.loadAddr(true, 1)}, v4.matchPrefix(localhost4), masq)})
	for _, f := range []family{v4, v6} {
		hp := o.hairpin[f.nfproto]
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: concat(f.matchProto(), ctIsDNAT(), []expr.Any{
			f.loadAddr(true, 1),
			&expr.Lookup{SourceRegister: 1, SetName: hp.Name, SetID: hp.ID},
		}, masq)})
		ma := o.maps[masqAllSet(t, f).Name]
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: concat(f.matchProto(), ctIsDNAT(), loadAddrProtoPort(f, true), []expr.Any{
			&expr.Lookup{SourceRegister: 8, SetName: ma.Name, SetID: ma.ID},
		}, masq)})
	}
	return o, nil
}

// elements of one target: the DNAT map element, with masqAll the masqall
// element, and the standby element that stands for the DNAT element while
// another attachment of the same container serves the host port.
type portElems struct {
	dnatMap, allSet, standbyMap string
	dnat, all, standby          nftables.SetElement
}

func elemsOf(t target, tg string) (portElems, error) {
	proto, err := protoNum(t.m.Protocol)
	if err != nil {
		return portElems{}, err
	}
	pp := append(padded([]byte{proto}), padded(portBytes(t.m.HostPort))...)
	key := pp
	if t.specific() {
		key = append(padded(t.f.addrBytes(t.m.HostIP)), pp...)
	}
	val := append(padded(t.f.addrBytes(t.ctr.IP)), padded(portBytes(t.m.ContainerPort))...)
	allKey := append(append(padded(t.f.addrBytes(t.ctr.IP)), padded([]byte{proto})...), padded(portBytes(t.m.ContainerPort))...)
	hostAddr := make([]byte, t.f.addrLen) // every host address
	if t.specific() {
		hostAddr = t.f.addrBytes(t.m.HostIP)
	}
	standbyKey := append(append(refKey(tg), padded(hostAddr)...), pp...)
	tab := nftTable()
	return portElems{
		dnatMap:    portsMap(tab, t.f, t.specific()).Name,
		allSet:     masqAllSet(tab, t.f).Name,
		standbyMap: standbyMap(tab, t.f).Name,
		dnat:       nftables.SetElement{Key: key, Val: val, Comment: tg},
		all:        nftables.SetElement{Key: allKey, Comment: tg},
		standby:    nftables.SetElement{Key: standbyKey, Val: val, Comment: tg},
	}, nil
}

func portBytes(p int) []byte { return binaryutil.BigEndian.PutUint16(uint16(p)) }

// padded pads b with zeros to whole 32-bit registers: the layout of one
// field of a concatenated key or value.
func padded(b []byte) []byte {
	out := make([]byte, (len(b)+3)/4*4)
	copy(out, b)
	return out
}

// intervalOf is the [start, end) pair of elements of a subnet in an
// interval set.
func intervalOf(f family, n *net.IPNet) []nftables.SetElement {
	start := f.addrBytes(n.IP.Mask(n.Mask))
	end := make([]byte, len(start))
	copy(end, start)
	mask := []byte(n.Mask)
	if len(mask) != len(end) {
		mask = net.CIDRMask(prefixLen(n), len(end)*8)
	}
	for i := range end {
		end[i] |= ^mask[i]
	}
	// end+1; a subnet ending at the top of the address space has no end
	// element (the interval runs to the end).
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return []nftables.SetElement{{Key: start}, {Key: end, IntervalEnd: true}}
		}
	}
	return []nftables.SetElement{{Key: start}}
}

func (np nftPorts) AddPorts(p PortMap) error {
	err := np.addPorts(p, false)
	if isNotExist(err) {
		// The network's reference chain went between the look and the
		// commit (its last attachment's DEL): again, creating it.
		err = np.addPorts(p, true)
	}
	return err
}

func (np nftPorts) addPorts(p PortMap, force bool) error {
	tg := tag(p.Network, p.ContainerID, p.IfName)
	tgts := targets(p)
	if len(tgts) == 0 {
		return nil
	}
	c, nl, done, err := newOpConn()
	if err != nil {
		return err
	}
	defer done()
	o, err := np.ensureBase(c)
	if err != nil {
		return err
	}
	for _, t := range tgts {
		e, err := elemsOf(t, tg)
		if err != nil {
			return err
		}
		// As for masquerade: a stale element of a lost attachment (same
		// data, old tag) is replaced, an element of another attachment
		// (other data) makes the add fail, and nothing is deleted
		// otherwise. An element of the same container on another
		// network keeps serving; this attachment's waits in standby.
		dnat := keyed{o.maps[e.dnatMap], e.dnat.Key}
		comment, found, err := elementComment(nl, dnat)
		if err != nil {
			return err
		}
		if found && comment != tg && sameContainer(comment, tg) {
			dnat, e.dnat = keyed{o.maps[e.standbyMap], e.standby.Key}, e.standby
			if comment, found, err = elementComment(nl, dnat); err != nil {
				return err
			}
		}
		if err := addLooked(c, dnat.set, tg, e.dnat, comment, found); err != nil {
			return fmt.Errorf("publishing %s: %w", t.m, err)
		}
		if p.MasqAll {
			if err := addOwned(c, nl, o.maps[e.allSet], tg, e.all); err != nil {
				return fmt.Errorf("publishing %s: %w", t.m, err)
			}
		}
		if p.SNAT {
			// The network's name marks the subnet's interval, which
			// goes with the network's last published port.
			iv := intervalOf(t.f, t.ctr)
			iv[0].Comment = shorten(p.Network)
			if err := c.SetAddElements(o.hairpin[t.f.nfproto], iv); err != nil {
				return fmt.Errorf("nftables: hairpin subnet %s: %w", t.ctr, err)
			}
		}
	}
	// The attachment's reference keeps the network's hairpin entries (see
	// netstate.go).
	if err := addRef(c, o.table, portsRefs, portsNetChain, p.Network, tg, force); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		if isNotExist(err) && !force {
			return err
		}
		if cerr := np.findConflict(tgts, tg); cerr != nil {
			return cerr
		}
		return fmt.Errorf("nftables: publishing %s: %w", MappingsString(p.Mappings), err)
	}
	return nil
}

// findConflict explains a failed ADD: the first mapping whose host side is
// held by another attachment, as a CodeConflict error.
func (nftPorts) findConflict(tgts []target, tg string) error {
	c, err := newConn()
	if err != nil {
		return nil
	}
	dumps := map[string]map[string]nftables.SetElement{}
	for _, t := range tgts {
		e, err := elemsOf(t, tg)
		if err != nil {
			return nil
		}
		d, ok := dumps[e.dnatMap]
		if !ok {
			els, err := dumpElements(c, portsMap(nftTable(), t.f, t.specific()))
			if err != nil {
				return nil
			}
			d = map[string]nftables.SetElement{}
			for _, el := range els {
				d[string(el.Key)] = el
			}
			dumps[e.dnatMap] = d
		}
		if have, ok := d[string(e.dnat.Key)]; ok && !sameContainer(have.Comment, tg) {
			return cni.Errorf(cni.CodeConflict, "host port %s is already published by %s", hostSide(t), ownerOf(have.Comment))
		}
	}
	return nil
}

func hostSide(t target) string {
	if t.specific() {
		return fmt.Sprintf("%s/%s", net.JoinHostPort(t.m.HostIP.String(), fmt.Sprint(t.m.HostPort)), t.m.Protocol)
	}
	return fmt.Sprintf("%d/%s", t.m.HostPort, t.m.Protocol)
}

func (np nftPorts) DelPorts(p PortMap) error {
	// Only elements carrying this attachment's tag: a host port in
	// prevResult may be published by another attachment by now.
	tg := tag(p.Network, p.ContainerID, p.IfName)
	t := nftTable()
	var err error
	if tgts := targets(p); len(tgts) > 0 {
		// The keys are known: one GET each, cost independent of the
		// number of containers.
		err = np.delKnown(tgts, tg)
	} else {
		err = np.release(func(s string) bool { return s == tg })
	}
	if err != nil {
		return err
	}
	// The network's hairpin entries go with its last published port.
	return dropNetwork(portsNetChain, p.Network, []*nftables.Set{hairpinSet(t, v4), hairpinSet(t, v6)})
}

func (np nftPorts) CheckPorts(p PortMap) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	tg := tag(p.Network, p.ContainerID, p.IfName)
	dumps := map[string]map[string]nftables.SetElement{}
	var missing []string
	for _, t := range targets(p) {
		e, err := elemsOf(t, tg)
		if err != nil {
			return err
		}
		dump := func(set string) (map[string]nftables.SetElement, error) {
			d, ok := dumps[set]
			if !ok {
				els, err := dumpElements(c, &nftables.Set{Table: nftTable(), Name: set})
				if err != nil {
					return nil, err
				}
				d = map[string]nftables.SetElement{}
				for _, el := range els {
					d[string(el.Key)] = el
				}
				dumps[set] = d
			}
			return d, nil
		}
		wants := []struct {
			set string
			el  nftables.SetElement
			on  bool
		}{{e.dnatMap, e.dnat, true}, {e.allSet, e.all, p.MasqAll}}
		// While another attachment of the container serves the port,
		// this one's element is its standby.
		d, err := dump(e.dnatMap)
		if err != nil {
			return err
		}
		if have, ok := d[string(e.dnat.Key)]; ok && have.Comment != tg && sameContainer(have.Comment, tg) {
			wants[0].set, wants[0].el = e.standbyMap, e.standby
		}
		for _, want := range wants {
			if !want.on {
				continue
			}
			d, err := dump(want.set)
			if err != nil {
				return err
			}
			have, ok := d[string(want.el.Key)]
			switch {
			case !ok:
				missing = append(missing, fmt.Sprintf("%s -> %s: no element in %s", hostSide(t), t.ctr.IP, want.set))
			case have.Comment != tg:
				missing = append(missing, fmt.Sprintf("%s: element in %s belongs to %q", hostSide(t), want.set, have.Comment))
			case string(have.Val) != string(want.el.Val):
				missing = append(missing, fmt.Sprintf("%s: element in %s points elsewhere", hostSide(t), want.set))
			}
		}
	}
	if len(missing) > 0 {
		return errors.New("port mappings missing: " + strings.Join(missing, "; "))
	}
	for _, ch := range []string{portsPrerouting, portsOutput, portsDNAT, portsPostrouting} {
		if _, err := c.ListChain(nftTable(), ch); err != nil {
			return fmt.Errorf("port mappings: chain %s: %w", ch, err)
		}
	}
	return nil
}

func (np nftPorts) GCPorts(network string, valid map[cni.Attachment]bool) error {
	// An attachment of another network is never dropped here, so a
	// container's standby there takes over a port that GC frees.
	keep := validTags(network, valid)
	net := shorten(network)
	t := nftTable()
	if err := np.release(func(s string) bool { return tagNetwork(s) == net && !keep[s] }); err != nil {
		return err
	}
	return dropNetwork(portsNetChain, network, []*nftables.Set{hairpinSet(t, v4), hairpinSet(t, v6)})
}
