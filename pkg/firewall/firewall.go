// Package firewall is berth's one place for packet filtering and NAT:
// masquerade, isolation between networks, icc and port mappings. It has
// two backends behind one interface: nftables through netlink (the default:
// one transaction per call, sets and maps so the cost of a call does not
// grow with the number of containers) and iptables
// (github.com/coreos/go-iptables) for hosts that need it.
//
// Every call acts on the network namespace of the calling thread: plugins
// run in the node's namespace, tests in a private one.
package firewall

import (
	"fmt"
	"net"

	"github.com/google/nftables"

	"github.com/berthnet/berth/pkg/cni"
)

// Backend names, as written in config (ipMasqBackend, backend).
const (
	NFTables = "nftables"
	IPTables = "iptables"
)

// Masq is the source NAT of one attachment: traffic from IPs to anything
// outside their own subnet (and not multicast) is masqueraded, as the
// reference bridge plugin's ipMasq and Docker's docker0 do.
type Masq struct {
	Network     string // CNI network name
	ContainerID string
	IfName      string
	// IPs are the container's addresses with their subnet's mask
	// (10.88.0.5/16). On DEL they may be empty (no prevResult, netns gone):
	// the backend then removes whatever it holds for (ContainerID, IfName).
	IPs []*net.IPNet
}

// Masquerader manages Masq rules. All methods are idempotent.
type Masquerader interface {
	AddMasq(m Masq) error
	DelMasq(m Masq) error
	// CheckMasq returns an error naming what is missing.
	CheckMasq(m Masq) error
	// GCMasq removes the network's rules of attachments not in valid.
	GCMasq(network string, valid map[cni.Attachment]bool) error
}

// NewMasquerader returns the Masquerader of a backend: "" or "nftables"
// (the default) or "iptables". Any other name is a code-7 CNI error, which
// plugins pass on with cni.Wrap.
func NewMasquerader(backend string) (Masquerader, error) {
	switch backend {
	case "", NFTables:
		return nftMasq{}, nil
	case IPTables:
		return iptMasq{}, nil
	}
	return nil, unknownBackend(backend)
}

// MasqueraderFor is NewMasquerader for a plugin's ipMasqBackend field: an
// unknown backend is a code-7 error naming the plugin and the field.
func MasqueraderFor(plugin, backend string) (Masquerader, error) {
	m, err := NewMasquerader(backend)
	if err != nil {
		return nil, cni.InvalidField(plugin, "ipMasqBackend", backend, err.Error())
	}
	return m, nil
}

func unknownBackend(backend string) error {
	return cni.Errorf(cni.CodeInvalidConfig, "firewall: backend %q: must be %q or %q", backend, NFTables, IPTables)
}

// Ready reports whether a backend can be driven here (STATUS): nftables
// answers a netlink query, or the iptables binary runs.
func Ready(backend string) error {
	switch backend {
	case "", NFTables:
		c, err := newConn()
		if err != nil {
			return err
		}
		if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		return nil
	case IPTables:
		ipt, err := iptFor(net.IPv4zero)
		if err != nil {
			return err
		}
		if _, err := ipt.ListChains("nat"); err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		return nil
	}
	return unknownBackend(backend)
}
