package firewall

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/coreos/go-iptables/iptables"
)

// iptPorts is the iptables PortMapper, shaped like the reference plugin's
// rules, in the nat table:
//
//	PREROUTING / OUTPUT  -m addrtype --dst-type LOCAL -j BERTH-HOSTPORT-DNAT
//	BERTH-HOSTPORT-DNAT  [-d hostIP] -p tcp --dport 8080 [conditions] -m comment --comment <tag> -j DNAT --to-destination 172.17.0.2:80
//	POSTROUTING          -j BERTH-HOSTPORT-MASQ
//	BERTH-HOSTPORT-MASQ  -s 127.0.0.0/8 -d 172.17.0.2 -p tcp --dport 80 -m comment --comment <tag> -j MASQUERADE  (snat)
//	                     -s 172.17.0.0/16 -d 172.17.0.2 -p tcp --dport 80 ... -j MASQUERADE                     (snat, hairpin)
//	                     -d 172.17.0.2 -p tcp --dport 80 -m conntrack --ctstate DNAT ... -j MASQUERADE          (masqAll)
//
// Masquerade is asked for directly rather than through a mark, so
// markMasqBit and externalSetMarkChain are accepted and validated but have
// no effect here.
//
// Cost, honestly: one iptables process per rule checked, added or listed
// (each reading the whole ruleset with iptables-nft), and packets walk
// BERTH-HOSTPORT-DNAT linearly, one rule per mapping: both grow with the
// number of containers. The conflict check (list, then append) is not
// atomic across processes: two ADDs racing for one port can both succeed,
// the first rule winning. Use the nftables backend where that matters.
type iptPorts struct{}

const (
	iptDNATChain = "BERTH-HOSTPORT-DNAT"
	iptMasqPorts = "BERTH-HOSTPORT-MASQ"
)

func (iptPorts) ensureBase(ipt *iptables.IPTables) error {
	for _, ch := range []string{iptDNATChain, iptMasqPorts} {
		if err := ensureChain(ipt, "nat", ch); err != nil {
			return err
		}
	}
	for _, j := range []struct {
		chain string
		rule  []string
	}{
		{"PREROUTING", []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", iptDNATChain}},
		{"OUTPUT", []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", iptDNATChain}},
		{"POSTROUTING", []string{"-j", iptMasqPorts}},
	} {
		if err := ipt.AppendUnique("nat", j.chain, j.rule...); err != nil {
			return fmt.Errorf("iptables: nat %s jump: %w", j.chain, err)
		}
	}
	return nil
}

func hostPortOf(spec []string) (proto, port, dst string) {
	for i := 0; i+1 < len(spec); i++ {
		switch spec[i] {
		case "-p":
			proto = spec[i+1]
		case "--dport":
			port = spec[i+1]
		case "-d":
			dst = strings.TrimSuffix(strings.TrimSuffix(spec[i+1], "/32"), "/128")
		}
	}
	return proto, port, dst
}

type iptRule struct {
	chain string
	spec  []string
}

func iptRules(p PortMap, t target, tg string) []iptRule {
	proto := strings.ToLower(t.m.Protocol)
	var dnat []string
	if t.specific() {
		dnat = append(dnat, hostSpec(t.m.HostIP, "-d")...)
	}
	dnat = append(dnat, "-p", proto, "-m", proto, "--dport", strconv.Itoa(t.m.HostPort))
	if t.f.nfproto == v4.nfproto {
		dnat = append(dnat, p.ConditionsV4...)
	} else {
		dnat = append(dnat, p.ConditionsV6...)
	}
	dest := net.JoinHostPort(t.ctr.IP.String(), strconv.Itoa(t.m.ContainerPort))
	if t.f.nfproto == v6.nfproto {
		dest = "[" + t.ctr.IP.String() + "]:" + strconv.Itoa(t.m.ContainerPort)
	}
	dnat = append(dnat, "-m", "comment", "--comment", tg, "-j", "DNAT", "--to-destination", dest)
	out := []iptRule{{iptDNATChain, dnat}}
	toCtr := append(hostSpec(t.ctr.IP, "-d"), "-p", proto, "-m", proto, "--dport", strconv.Itoa(t.m.ContainerPort))
	masq := []string{"-m", "comment", "--comment", tg, "-j", "MASQUERADE"}
	if p.SNAT {
		if t.f.nfproto == v4.nfproto {
			out = append(out, iptRule{iptMasqPorts, concatArgs([]string{"-s", "127.0.0.0/8"}, toCtr, masq)})
		}
		out = append(out, iptRule{iptMasqPorts, concatArgs([]string{"-s", subnetOf(t.ctr).String()}, toCtr, masq)})
	}
	if p.MasqAll {
		out = append(out, iptRule{iptMasqPorts, concatArgs(toCtr, []string{"-m", "conntrack", "--ctstate", "DNAT"}, masq)})
	}
	return out
}

func concatArgs(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func (ip iptPorts) AddPorts(p PortMap) error {
	tg := tag(p.Network, p.ContainerID, p.IfName)
	tgts := targets(p)
	for _, t := range tgts {
		if _, err := protoNum(t.m.Protocol); err != nil {
			return err
		}
	}
	byFam := map[byte][]target{}
	for _, t := range tgts {
		byFam[t.f.nfproto] = append(byFam[t.f.nfproto], t)
	}
	for _, ts := range byFam {
		ipt, err := iptFor(ts[0].ctr.IP)
		if err != nil {
			return err
		}
		if err := ip.ensureBase(ipt); err != nil {
			return err
		}
		// Conflicts: another container's DNAT rule for the same host
		// side. The same container's rule from another network (Podman
		// hands its mappings to every network it joins) is not one:
		// both stay, the first serves, and the other takes over when
		// its DEL removes it, as with the reference plugin.
		others, err := taggedRules(ipt, "nat", iptDNATChain, func(s string) bool { return !sameContainer(s, tg) })
		if err != nil {
			return err
		}
		for _, t := range ts {
			for _, o := range others {
				proto, port, dst := hostPortOf(o)
				hostIP := ""
				if t.specific() {
					hostIP = t.m.HostIP.String()
				}
				if proto == strings.ToLower(t.m.Protocol) && port == strconv.Itoa(t.m.HostPort) && dst == hostIP {
					owner := "another container"
					for i := 0; i+1 < len(o); i++ {
						if o[i] == "--comment" {
							owner = ownerOf(o[i+1])
						}
					}
					return cni.Errorf(cni.CodeConflict, "host port %s is already published by %s", hostSide(t), owner)
				}
			}
		}
		for _, t := range ts {
			for _, r := range iptRules(p, t, tg) {
				if err := ipt.AppendUnique("nat", r.chain, r.spec...); err != nil {
					return fmt.Errorf("iptables: %s %v: %w", r.chain, r.spec, err)
				}
			}
		}
	}
	return nil
}

func (iptPorts) DelPorts(p PortMap) error {
	tg := tag(p.Network, p.ContainerID, p.IfName)
	return iptDropTagged(func(s string) bool { return s == tg })
}

// iptDropTagged removes the port-mapping rules whose tag matches. Where a
// UDP host port stays published by another attachment of the same
// container (a rule further down takes over), the flows conntrack keeps
// DNATed to the removed address are forgotten, as nftables' promotion
// does (see flushPromoted).
func iptDropTagged(match func(string) bool) error {
	ipts, err := iptBoth()
	if err != nil {
		return err
	}
	for i, ipt := range ipts {
		rules, err := taggedRules(ipt, "nat", iptDNATChain, func(s string) bool { return tagNetwork(s) != "" })
		if err != nil {
			return err
		}
		var drop [][]string
		var flush []Published
		for _, r := range rules {
			d, ok := decodeDNATRule(r)
			if !ok || !match(d.Tag) {
				continue
			}
			drop = append(drop, r)
			if d.Protocol != "udp" {
				continue
			}
			for _, o := range rules {
				if k, ok := decodeDNATRule(o); ok && !match(k.Tag) && sameContainer(k.Tag, d.Tag) &&
					k.Protocol == d.Protocol && k.HostPort == d.HostPort && k.HostIP.Equal(d.HostIP) {
					flush = append(flush, d)
					break
				}
			}
		}
		if err := deleteRules(ipt, "nat", iptDNATChain, drop); err != nil {
			return err
		}
		masq, err := taggedRules(ipt, "nat", iptMasqPorts, match)
		if err != nil {
			return err
		}
		if err := deleteRules(ipt, "nat", iptMasqPorts, masq); err != nil {
			return err
		}
		f := []family{v4, v6}[i]
		for _, d := range flush {
			// Best effort: the port is served either way.
			_ = flushUDPTo(f, d.HostPort, d.ContainerIP)
		}
	}
	return nil
}

func (iptPorts) CheckPorts(p PortMap) error {
	tg := tag(p.Network, p.ContainerID, p.IfName)
	var missing []string
	for _, t := range targets(p) {
		ipt, err := iptFor(t.ctr.IP)
		if err != nil {
			return err
		}
		for _, r := range iptRules(p, t, tg) {
			ok, err := ipt.Exists("nat", r.chain, r.spec...)
			if err != nil {
				return fmt.Errorf("iptables: %w", err)
			}
			if !ok {
				missing = append(missing, fmt.Sprintf("%s: no rule in nat %s", hostSide(t), r.chain))
			}
		}
	}
	if len(missing) > 0 {
		return errors.New("port mappings missing: " + strings.Join(missing, "; "))
	}
	return nil
}

func (iptPorts) GCPorts(network string, valid map[cni.Attachment]bool) error {
	keep := validTags(network, valid)
	net := shorten(network)
	return iptDropTagged(func(s string) bool { return tagNetwork(s) == net && !keep[s] })
}
