// Package nameserver is berth's name server for user-defined networks: a Table of
// the names registered on each network, a Resolver (a miekg/dns Handler)
// answering from it with the asker's network as the scope and forwarding
// everything else, and a Server that listens on a changing set of gateway
// addresses, UDP and TCP.
//
// It is shaped like net/http and miekg/dns: Resolver is the Handler, Server
// carries documented fields and a NotifyStartedFunc so that tests wait for
// it without sleeping, and loggers are passed in.
package nameserver

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
)

// Network is one network's DNS settings.
type Network struct {
	Name string
	// Domain is the search domain ("dns.podman"): name.Domain resolves like
	// name. Lower case, without a trailing dot.
	Domain string
	// Upstreams get the queries for other names, in order of preference.
	// Empty means the Resolver's default upstreams.
	Upstreams []netip.AddrPort
	// Internal networks never forward: other names are REFUSED.
	Internal bool
}

// Record is the names and addresses of one container interface.
type Record struct {
	// Key identifies the record within its network (the attachment).
	Key string
	// Names resolve to Addrs, as do Aliases; PTR answers give Names[0]
	// (or Aliases[0] when there are no names).
	Names   []string
	Aliases []string
	// Addrs carry the subnet's prefix length: the network's subnets, which
	// decide who may ask, are taken from them.
	Addrs []netip.Prefix
	// Gateways are the addresses the server answers on for this network.
	Gateways []netip.Addr
	// Remote records belong to containers of another host (a network
	// spanning hosts): their names resolve, but the server does not listen
	// on their gateways, and they do not count in LocalLen.
	Remote bool `json:",omitempty"`
}

// Table is the set of registered names, by network. It is safe for
// concurrent use: queries take a read lock, updates (one per ADD or DEL) a
// write lock, and each update costs in proportion to the one record it
// touches, not to the size of the network.
type Table struct {
	mu   sync.RWMutex
	nets map[string]*netState
}

type netState struct {
	Network
	records  map[string]*Record
	byName   map[string]map[string]*Record // lower-case name -> key -> record
	byAddr   map[netip.Addr]*Record
	subnets  map[netip.Prefix]int // refcounts over records
	gateways map[netip.Addr]int   // refcounts over local records
	locals   int                  // records that are not Remote
	// dotDomain is "." + Domain.
	dotDomain string
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{nets: map[string]*netState{}}
}

// Set adds or replaces rec in network n, and updates n's settings.
func (t *Table) Set(n Network, rec Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.nets[n.Name]
	if ns == nil {
		ns = &netState{
			records: map[string]*Record{}, byName: map[string]map[string]*Record{},
			byAddr: map[netip.Addr]*Record{}, subnets: map[netip.Prefix]int{}, gateways: map[netip.Addr]int{},
		}
		t.nets[n.Name] = ns
	}
	ns.Network = n
	ns.Domain = normalize(n.Domain)
	ns.dotDomain = "." + ns.Domain
	if old := ns.records[rec.Key]; old != nil {
		ns.remove(old)
	}
	r := rec // our own copy
	ns.records[r.Key] = &r
	for _, name := range append(append([]string(nil), r.Names...), r.Aliases...) {
		name = normalize(name)
		if ns.byName[name] == nil {
			ns.byName[name] = map[string]*Record{}
		}
		ns.byName[name][r.Key] = &r
	}
	for _, p := range r.Addrs {
		ns.byAddr[p.Addr()] = &r
		ns.subnets[p.Masked()]++
	}
	if !r.Remote {
		ns.locals++
		for _, g := range r.Gateways {
			ns.gateways[g]++
		}
	}
}

// Remove deletes a record; it reports whether the table is now empty.
func (t *Table) Remove(network, key string) (empty bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ns := t.nets[network]; ns != nil {
		if r := ns.records[key]; r != nil {
			ns.remove(r)
		}
		if len(ns.records) == 0 {
			delete(t.nets, network)
		}
	}
	return len(t.nets) == 0
}

// ReplaceNetwork swaps a network's records for recs (a reload from the
// registry); with no records the network is dropped.
func (t *Table) ReplaceNetwork(n Network, recs []Record) {
	t.mu.Lock()
	delete(t.nets, n.Name)
	t.mu.Unlock()
	for _, r := range recs {
		t.Set(n, r)
	}
}

func (ns *netState) remove(r *Record) {
	delete(ns.records, r.Key)
	for _, name := range append(append([]string(nil), r.Names...), r.Aliases...) {
		name = normalize(name)
		if m := ns.byName[name]; m != nil {
			delete(m, r.Key)
			if len(m) == 0 {
				delete(ns.byName, name)
			}
		}
	}
	for _, p := range r.Addrs {
		if ns.byAddr[p.Addr()] == r {
			delete(ns.byAddr, p.Addr())
		}
		if ns.subnets[p.Masked()]--; ns.subnets[p.Masked()] <= 0 {
			delete(ns.subnets, p.Masked())
		}
	}
	if !r.Remote {
		ns.locals--
		for _, g := range r.Gateways {
			if ns.gateways[g]--; ns.gateways[g] <= 0 {
				delete(ns.gateways, g)
			}
		}
	}
}

// Len is the number of records over all networks.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, ns := range t.nets {
		n += len(ns.records)
	}
	return n
}

// LocalLen is the number of records that are not Remote: the sidecar runs
// while there are any.
func (t *Table) LocalLen() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, ns := range t.nets {
		n += ns.locals
	}
	return n
}

// Gateways returns the addresses to listen on: every gateway of every
// network's local records.
func (t *Table) Gateways() []netip.Addr {
	t.mu.RLock()
	defer t.mu.RUnlock()
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, ns := range t.nets {
		for g := range ns.gateways {
			if !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	return out
}

// scope returns the networks a query from src, received on local, may see:
// those whose subnets hold src (as Docker does), or, for the host itself,
// those that own the local address. The host is told by its source: the
// kernel gives a connection to one of the host's own addresses that
// address as its source (or loopback). Anyone else on no network sees
// nothing, so the sidecar is no open resolver, nor a directory of names,
// for whatever can route to a gateway address. Called with the read lock
// held.
func (t *Table) scope(src, local netip.Addr, buf []*netState) []*netState {
	for _, ns := range t.nets {
		for p := range ns.subnets {
			if p.Contains(src) {
				buf = append(buf, ns)
				break
			}
		}
	}
	if len(buf) > 0 || (src != local && !src.IsLoopback()) {
		return buf
	}
	for _, ns := range t.nets {
		if ns.gateways[local] > 0 {
			buf = append(buf, ns)
		}
	}
	return buf
}

// lookupResult is what the table knows about a query.
type lookupResult struct {
	inScope   bool // some network of the asker's
	known     bool // the name exists for the asker (authoritative answer)
	authority bool // the name is ours to deny (NXDOMAIN rather than forward)
	addrs     []netip.Addr
	ptr       []string // FQDNs with trailing dot
	internal  bool
	upstreams []netip.AddrPort
}

// lookupName resolves a forward name (lower case, no trailing dot) for the
// asker. v4/v6 select the address families to return.
func (t *Table) lookupName(src, local netip.Addr, name string, v4, v6 bool) lookupResult {
	var res lookupResult
	var buf [4]*netState
	t.mu.RLock()
	defer t.mu.RUnlock()
	nets := t.scope(src, local, buf[:0])
	res.fill(nets)
	for _, ns := range nets {
		short := name
		if ns.Domain != "" {
			if name == ns.Domain {
				res.authority = true
				continue
			}
			// dotDomain is built once per update: concatenating here cost
			// an allocation per query.
			if s, ok := strings.CutSuffix(name, ns.dotDomain); ok {
				short = s
				res.authority = true
			}
		}
		recs, ok := ns.byName[short]
		if !ok && short != name {
			recs, ok = ns.byName[name]
		}
		if !ok {
			continue
		}
		res.known = true
		for _, r := range recs {
			for _, p := range r.Addrs {
				a := p.Addr()
				if (a.Is4() && v4) || (a.Is6() && v6) {
					res.addrs = append(res.addrs, a)
				}
			}
		}
	}
	// Single-label names are never forwarded (dnsmasq's domain-needed): a
	// container name from another network must be NXDOMAIN for the asker,
	// not whatever an upstream makes of it.
	if !strings.Contains(name, ".") {
		res.authority = true
	}
	rand.Shuffle(len(res.addrs), func(i, j int) { res.addrs[i], res.addrs[j] = res.addrs[j], res.addrs[i] })
	return res
}

// lookupAddr resolves a reverse query for addr.
func (t *Table) lookupAddr(src, local, addr netip.Addr) lookupResult {
	var res lookupResult
	var buf [4]*netState
	t.mu.RLock()
	defer t.mu.RUnlock()
	nets := t.scope(src, local, buf[:0])
	res.fill(nets)
	for _, ns := range nets {
		for p := range ns.subnets {
			if p.Contains(addr) {
				res.authority = true
			}
		}
		r := ns.byAddr[addr]
		if r == nil {
			continue
		}
		res.known = true
		name := ""
		if len(r.Names) > 0 {
			name = r.Names[0]
		} else if len(r.Aliases) > 0 {
			name = r.Aliases[0]
		}
		if name == "" {
			continue
		}
		if ns.Domain != "" {
			name += "." + ns.Domain
		}
		res.ptr = append(res.ptr, normalize(name)+".")
	}
	return res
}

func (res *lookupResult) fill(nets []*netState) {
	res.inScope = len(nets) > 0
	for _, ns := range nets {
		if ns.Internal {
			res.internal = true
		}
		if res.upstreams == nil && len(ns.Upstreams) > 0 {
			res.upstreams = ns.Upstreams
		}
	}
}

func normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
