package firewall

import (
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/berthnet/berth/pkg/cni"
)

// iptIso is the iptables Isolator, with the reference firewall plugin's
// chains so that rules written by either binary are found by the other:
//
//	filter FORWARD:  -j CNI-FORWARD (first)
//	CNI-FORWARD:     -j CNI-ADMIN (first; the admin's chain, never touched)
//	                 -d IP -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT   (comment = tag)
//	                 -s IP -j ACCEPT                                              (comment = tag)
//	FORWARD:         -j CNI-ISOLATION-STAGE-1 (first)
//	STAGE-1:         [-i BR -o BR -j DROP   (isolated)]  -i BR ! -o BR -j STAGE-2  ... -j RETURN
//	STAGE-2:         -o BR -j DROP ... -j RETURN
//
// icc off (-i BR -o BR -j DROP) only sees bridged traffic when br_netfilter
// is loaded with bridge-nf-call-iptables on, as with the reference and
// Docker; the nftables backend does not need it.
type iptIso struct{ admin string }

const (
	iptFwdChain    = "CNI-FORWARD"
	iptStage1      = "CNI-ISOLATION-STAGE-1"
	iptStage2      = "CNI-ISOLATION-STAGE-2"
	iptFwdComment  = "CNI firewall plugin rules"
	iptAdmComment  = "CNI firewall plugin admin overrides"
	iptIsoComment  = "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)"
	iptPolComment  = "CNI firewall plugin rules (ingressPolicy: %s)"
	iptFilterTable = "filter"
)

// insertFirst inserts rule at position 1 unless it is already there.
func insertFirst(ipt *iptables.IPTables, chain string, rule ...string) error {
	ok, err := ipt.Exists(iptFilterTable, chain, rule...)
	if err != nil {
		return fmt.Errorf("iptables: %s: %w", chain, err)
	}
	if ok {
		return nil
	}
	if err := ipt.Insert(iptFilterTable, chain, 1, rule...); err != nil {
		return fmt.Errorf("iptables: inserting into %s: %w", chain, err)
	}
	return nil
}

func (b iptIso) base(ipt *iptables.IPTables) error {
	for _, ch := range []string{b.admin, iptFwdChain} {
		if err := ensureChain(ipt, iptFilterTable, ch); err != nil {
			return err
		}
	}
	if err := insertFirst(ipt, "FORWARD", "-m", "comment", "--comment", iptFwdComment, "-j", iptFwdChain); err != nil {
		return err
	}
	return insertFirst(ipt, iptFwdChain, "-m", "comment", "--comment", iptAdmComment, "-j", b.admin)
}

func allowRules(ipt *iptables.IPTables, a Isolation, tg string) [][]string {
	var out [][]string
	for _, ipn := range a.IPs {
		if (ipn.IP.To4() != nil) != (ipt.Proto() == iptables.ProtocolIPv4) {
			continue
		}
		out = append(out,
			append(hostSpec(ipn.IP, "-d"), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-m", "comment", "--comment", tg, "-j", "ACCEPT"),
			append(hostSpec(ipn.IP, "-s"), "-m", "comment", "--comment", tg, "-j", "ACCEPT"))
	}
	return out
}

func (b iptIso) isolate(ipt *iptables.IPTables, a Isolation) error {
	for _, ch := range []string{iptStage1, iptStage2} {
		if err := ensureChain(ipt, iptFilterTable, ch); err != nil {
			return err
		}
	}
	if err := insertFirst(ipt, "FORWARD", "-m", "comment", "--comment", iptIsoComment, "-j", iptStage1); err != nil {
		return err
	}
	pol := fmt.Sprintf(iptPolComment, a.Policy)
	if err := insertFirst(ipt, iptStage1, "-i", a.Bridge, "!", "-o", a.Bridge, "-m", "comment", "--comment", pol, "-j", iptStage2); err != nil {
		return err
	}
	if a.Policy == PolicyIsolated {
		if err := insertFirst(ipt, iptStage1, "-i", a.Bridge, "-o", a.Bridge, "-m", "comment", "--comment", pol, "-j", "DROP"); err != nil {
			return err
		}
	}
	if err := insertFirst(ipt, iptStage2, "-o", a.Bridge, "-m", "comment", "--comment", iptIsoComment, "-j", "DROP"); err != nil {
		return err
	}
	for _, ch := range []string{iptStage1, iptStage2} {
		if err := ipt.AppendUnique(iptFilterTable, ch, "-m", "comment", "--comment", iptIsoComment, "-j", "RETURN"); err != nil {
			return fmt.Errorf("iptables: %s: %w", ch, err)
		}
	}
	return nil
}

func (b iptIso) AddIsolation(a Isolation) error {
	if err := a.Validate(); err != nil {
		return err
	}
	tg := tag(a.Network, a.ContainerID, a.IfName)
	ipts, err := iptBoth()
	if err != nil {
		return err
	}
	// A teardown of the bridge's rules waits (see netstate_ipt.go).
	unlock, err := lockShared()
	if err != nil {
		return err
	}
	defer unlock()
	for _, ipt := range ipts {
		if err := b.base(ipt); err != nil {
			return err
		}
		for _, r := range allowRules(ipt, a, tg) {
			if err := ipt.AppendUnique(iptFilterTable, iptFwdChain, r...); err != nil {
				return fmt.Errorf("iptables: %s: %w", iptFwdChain, err)
			}
		}
		if a.Policy == PolicySameBridge || a.Policy == PolicyIsolated {
			if err := b.isolate(ipt, a); err != nil {
				return err
			}
		}
	}
	return nil
}

func (iptIso) DelIsolation(a Isolation) error {
	tg := tag(a.Network, a.ContainerID, a.IfName)
	if err := iptDelTagged(func(s string) bool { return s == tg }); err != nil {
		return err
	}
	if a.Policy != PolicySameBridge && a.Policy != PolicyIsolated {
		return nil
	}
	ipts, err := iptBoth()
	if err != nil {
		return err
	}
	// The bridge's isolation rules go with the network's last attachment.
	return dropIptIsolation(ipts, a.Network, a.Bridge)
}

// iptDelTagged removes the isolation rules whose tag matches.
func iptDelTagged(match func(string) bool) error {
	return iptDeleteTagged(iptFilterTable, []string{iptFwdChain}, match)
}

func (b iptIso) CheckIsolation(a Isolation) error {
	if err := a.Validate(); err != nil {
		return err
	}
	tg := tag(a.Network, a.ContainerID, a.IfName)
	ipts, err := iptBoth()
	if err != nil {
		return err
	}
	var missing []string
	for _, ipt := range ipts {
		for _, r := range allowRules(ipt, a, tg) {
			if ok, err := ipt.Exists(iptFilterTable, iptFwdChain, r...); err != nil || !ok {
				missing = append(missing, fmt.Sprintf("%s rule %s", iptFwdChain, strings.Join(r, " ")))
			}
		}
		if a.Policy == PolicySameBridge || a.Policy == PolicyIsolated {
			if ok, err := ipt.Exists(iptFilterTable, iptStage2, "-o", a.Bridge, "-m", "comment", "--comment", iptIsoComment, "-j", "DROP"); err != nil || !ok {
				missing = append(missing, fmt.Sprintf("%s rule for %s", iptStage2, a.Bridge))
			}
		}
	}
	if len(missing) > 0 {
		return errors.New("firewall rules missing: " + strings.Join(missing, "; "))
	}
	return nil
}

// GCIsolation removes stale per-container rules. Isolation rules are per
// bridge and stay, as with the reference.
func (iptIso) GCIsolation(network string, valid map[cni.Attachment]bool) error {
	keep := validTags(network, valid)
	net := shorten(network)
	return iptDelTagged(func(s string) bool { return tagNetwork(s) == net && !keep[s] })
}
