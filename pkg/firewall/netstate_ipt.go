package firewall

import (
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// The iptables backends' per-network state (see netstate.go): a subnet's
// masquerade chain and a bridge's isolation rules. iptables has no
// transactions over several commands, so the lock does all the work: ADDs
// hold it shared, the teardown exclusively.

// dropUnusedIptMasqChains deletes the subnet chains (all BERTH-MASQ-*
// when chains is nil) that no rule of BERTH-MASQ jumps to.
func dropUnusedIptMasqChains(ipt *iptables.IPTables, chains []string) error {
	ok, err := ipt.ChainExists("nat", iptMasqChain)
	if err != nil || !ok {
		return err
	}
	unlock, err := lockExclusive()
	if err != nil {
		return err
	}
	defer unlock()
	rules, err := ipt.List("nat", iptMasqChain)
	if err != nil {
		return fmt.Errorf("iptables: listing nat %s: %w", iptMasqChain, err)
	}
	used := map[string]bool{}
	for _, r := range rules {
		f := strings.Fields(r)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "-j" {
				used[f[i+1]] = true
			}
		}
	}
	if chains == nil {
		all, err := ipt.ListChains("nat")
		if err != nil {
			return fmt.Errorf("iptables: listing nat chains: %w", err)
		}
		for _, ch := range all {
			if strings.HasPrefix(ch, iptMasqChain+"-") {
				chains = append(chains, ch)
			}
		}
	}
	for _, ch := range chains {
		if used[ch] {
			continue
		}
		if ok, err := ipt.ChainExists("nat", ch); err != nil || !ok {
			continue
		}
		if err := ipt.ClearAndDeleteChain("nat", ch); err != nil {
			return fmt.Errorf("iptables: deleting nat %s: %w", ch, err)
		}
	}
	return nil
}

// dropIptIsolation removes the bridge's isolation rules (from both
// families: an IPv4-only network has them in ip6tables too) once no
// attachment of network has rules in CNI-FORWARD of either family.
func dropIptIsolation(ipts []*iptables.IPTables, network, bridge string) error {
	if bridge == "" {
		return nil
	}
	net := shorten(network)
	ofNet := func(s string) bool { return tagNetwork(s) == net }
	unlock, err := lockExclusive()
	if err != nil {
		return err
	}
	defer unlock()
	for _, ipt := range ipts {
		if left, err := taggedRules(ipt, iptFilterTable, iptFwdChain, ofNet); err != nil || len(left) > 0 {
			return err
		}
	}
	for _, ipt := range ipts {
		for _, policy := range []string{PolicySameBridge, PolicyIsolated} {
			pol := fmt.Sprintf(iptPolComment, policy)
			for _, spec := range [][]string{
				{"-i", bridge, "!", "-o", bridge, "-m", "comment", "--comment", pol, "-j", iptStage2},
				{"-i", bridge, "-o", bridge, "-m", "comment", "--comment", pol, "-j", "DROP"},
			} {
				if err := deleteIfChain(ipt, iptStage1, spec); err != nil {
					return err
				}
			}
		}
		if err := deleteIfChain(ipt, iptStage2, []string{"-o", bridge, "-m", "comment", "--comment", iptIsoComment, "-j", "DROP"}); err != nil {
			return err
		}
	}
	return nil
}

func deleteIfChain(ipt *iptables.IPTables, chain string, spec []string) error {
	if ok, err := ipt.ChainExists(iptFilterTable, chain); err != nil || !ok {
		return err
	}
	if err := ipt.DeleteIfExists(iptFilterTable, chain, spec...); err != nil {
		return fmt.Errorf("iptables: deleting %s rule %v: %w", chain, spec, err)
	}
	return nil
}
