package firewall

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/coreos/go-iptables/iptables"
)

// iptMasq is the iptables Masquerader, shaped like Docker's and the
// reference bridge's rules, in the nat table:
//
//	POSTROUTING -m comment --comment "berth masquerade" -j BERTH-MASQ
//	BERTH-MASQ  -s 10.88.0.5/32 -m comment --comment net/cid/eth0 -j BERTH-MASQ-<hash of subnet>
//	BERTH-MASQ-<hash>  -d 10.88.0.0/16 -j RETURN
//	                   -d 224.0.0.0/4 -j RETURN
//	                   -j MASQUERADE
//
// Cost, honestly: go-iptables runs the iptables binary for every check,
// append and delete (several process starts per call, each of which with
// iptables-nft reads the whole ruleset), and a packet walks BERTH-MASQ
// linearly, one rule per container. Both grow with the number of
// containers. It exists for hosts that must stay on iptables; the nftables
// backend is the one that scales.
type iptMasq struct{}

const (
	iptMasqChain   = "BERTH-MASQ"
	iptMasqComment = "berth masquerade"
)

func iptFor(ip net.IP) (*iptables.IPTables, error) {
	proto := iptables.ProtocolIPv4
	if ip.To4() == nil {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.NewWithProtocol(proto)
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return ipt, nil
}

func iptBoth() ([]*iptables.IPTables, error) {
	var out []*iptables.IPTables
	for _, ip := range []net.IP{net.IPv4zero, net.IPv6zero} {
		ipt, err := iptFor(ip)
		if err != nil {
			return nil, err
		}
		out = append(out, ipt)
	}
	return out, nil
}

func iptSubnetChain(n *net.IPNet) string {
	sum := sha256.Sum256([]byte(n.String()))
	return "BERTH-MASQ-" + strings.ToUpper(hex.EncodeToString(sum[:])[:16])
}

func ensureChain(ipt *iptables.IPTables, table, chain string) error {
	ok, err := ipt.ChainExists(table, chain)
	if err != nil {
		return fmt.Errorf("iptables: %s %s: %w", table, chain, err)
	}
	if ok {
		return nil
	}
	if err := ipt.NewChain(table, chain); err != nil {
		// Another process may have made it in between.
		if ok, _ := ipt.ChainExists(table, chain); ok {
			return nil
		}
		return fmt.Errorf("iptables: creating %s %s: %w", table, chain, err)
	}
	return nil
}

func (iptMasq) AddMasq(m Masq) error {
	tg := tag(m.Network, m.ContainerID, m.IfName)
	// A teardown of an unused subnet chain waits (see netstate_ipt.go).
	unlock, err := lockShared()
	if err != nil {
		return err
	}
	defer unlock()
	for _, ipn := range m.IPs {
		ipt, err := iptFor(ipn.IP)
		if err != nil {
			return err
		}
		if err := ensureChain(ipt, "nat", iptMasqChain); err != nil {
			return err
		}
		if err := ipt.AppendUnique("nat", "POSTROUTING", "-m", "comment", "--comment", iptMasqComment, "-j", iptMasqChain); err != nil {
			return fmt.Errorf("iptables: POSTROUTING jump: %w", err)
		}
		sub := subnetOf(ipn)
		chain := iptSubnetChain(sub)
		if err := ensureChain(ipt, "nat", chain); err != nil {
			return err
		}
		mc := "224.0.0.0/4"
		if ipn.IP.To4() == nil {
			mc = "ff00::/8"
		}
		for _, rule := range [][]string{
			{"-d", sub.String(), "-j", "RETURN"},
			{"-d", mc, "-j", "RETURN"},
			{"-j", "MASQUERADE"},
		} {
			if err := ipt.AppendUnique("nat", chain, rule...); err != nil {
				return fmt.Errorf("iptables: %s: %w", chain, err)
			}
		}
		if err := ipt.AppendUnique("nat", iptMasqChain, append(hostSpec(ipn.IP, "-s"), "-m", "comment", "--comment", tg, "-j", chain)...); err != nil {
			return fmt.Errorf("iptables: masquerade %s: %w", ipn.IP, err)
		}
	}
	return nil
}

func hostSpec(ip net.IP, flag string) []string {
	bits := 32
	if ip.To4() == nil {
		bits = 128
	}
	return []string{flag, fmt.Sprintf("%s/%d", ip, bits)}
}

// taggedRules lists chain's rules whose comment is a tag accepted by match,
// as argument lists ready for Delete.
func taggedRules(ipt *iptables.IPTables, table, chain string, match func(string) bool) ([][]string, error) {
	ok, err := ipt.ChainExists(table, chain)
	if err != nil || !ok {
		return nil, err
	}
	rules, err := ipt.List(table, chain)
	if err != nil {
		return nil, fmt.Errorf("iptables: listing %s %s: %w", table, chain, err)
	}
	var out [][]string
	for _, r := range rules {
		f := strings.Fields(r)
		if len(f) < 2 || f[0] != "-A" {
			continue
		}
		spec := f[2:]
		for i := 0; i+1 < len(spec); i++ {
			// iptables -S quotes comments; Delete wants the bare value.
			spec[i+1] = strings.Trim(spec[i+1], `"`)
			if spec[i] == "--comment" && match(spec[i+1]) {
				out = append(out, spec)
				break
			}
		}
	}
	return out, nil
}

func deleteRules(ipt *iptables.IPTables, table, chain string, rules [][]string) error {
	for _, r := range rules {
		if err := ipt.DeleteIfExists(table, chain, r...); err != nil {
			return fmt.Errorf("iptables: deleting %s rule %v: %w", chain, r, err)
		}
	}
	return nil
}

// iptDeleteTagged removes, in both families, the rules of table's chains
// whose tag matches: DEL (one attachment's tag) and GC (a network's tags
// but the valid ones) of every iptables backend.
func iptDeleteTagged(table string, chains []string, match func(string) bool) error {
	ipts, err := iptBoth()
	if err != nil {
		return err
	}
	for _, ipt := range ipts {
		for _, ch := range chains {
			rules, err := taggedRules(ipt, table, ch, match)
			if err != nil {
				return err
			}
			if err := deleteRules(ipt, table, ch, rules); err != nil {
				return err
			}
		}
	}
	return nil
}

func (iptMasq) DelMasq(m Masq) error {
	tg := tag(m.Network, m.ContainerID, m.IfName)
	ipts, err := iptBoth()
	if err != nil {
		return err
	}
	for _, ipt := range ipts {
		rules, err := taggedRules(ipt, "nat", iptMasqChain, func(s string) bool { return s == tg })
		if err != nil {
			return err
		}
		if err := deleteRules(ipt, "nat", iptMasqChain, rules); err != nil {
			return err
		}
		// The subnet's chain, unless another rule still jumps to it.
		var chains []string
		for _, ipn := range m.IPs {
			if (ipn.IP.To4() != nil) == (ipt.Proto() == iptables.ProtocolIPv4) {
				chains = append(chains, iptSubnetChain(subnetOf(ipn)))
			}
		}
		if len(m.IPs) == 0 {
			chains = nil // unknown subnet: every unused one
		} else if len(chains) == 0 {
			continue
		}
		if err := dropUnusedIptMasqChains(ipt, chains); err != nil {
			return err
		}
	}
	return nil
}

func (iptMasq) CheckMasq(m Masq) error {
	tg := tag(m.Network, m.ContainerID, m.IfName)
	var missing []string
	for _, ipn := range m.IPs {
		ipt, err := iptFor(ipn.IP)
		if err != nil {
			return err
		}
		chain := iptSubnetChain(subnetOf(ipn))
		ok, err := ipt.Exists("nat", iptMasqChain, append(hostSpec(ipn.IP, "-s"), "-m", "comment", "--comment", tg, "-j", chain)...)
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		if !ok {
			missing = append(missing, fmt.Sprintf("%s: no rule in nat %s", ipn.IP, iptMasqChain))
			continue
		}
		if ok, err := ipt.Exists("nat", chain, "-j", "MASQUERADE"); err != nil || !ok {
			missing = append(missing, fmt.Sprintf("%s: chain %s has no MASQUERADE", ipn.IP, chain))
		}
	}
	if len(missing) > 0 {
		return errors.New("masquerade missing: " + strings.Join(missing, "; "))
	}
	return nil
}

func (iptMasq) GCMasq(network string, valid map[cni.Attachment]bool) error {
	keep := validTags(network, valid)
	net := shorten(network)
	ipts, err := iptBoth()
	if err != nil {
		return err
	}
	for _, ipt := range ipts {
		rules, err := taggedRules(ipt, "nat", iptMasqChain, func(s string) bool { return tagNetwork(s) == net && !keep[s] })
		if err != nil {
			return err
		}
		if err := deleteRules(ipt, "nat", iptMasqChain, rules); err != nil {
			return err
		}
		if err := dropUnusedIptMasqChains(ipt, nil); err != nil {
			return err
		}
	}
	return nil
}
