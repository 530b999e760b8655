package firewall

import (
	"fmt"
	"net"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
)

// Ingress policies of the firewall plugin (the reference's field values).
const (
	// PolicyOpen: no isolation, only the base rules.
	PolicyOpen = "open"
	// PolicySameBridge: Docker's isolation between networks: traffic
	// routed from one policy bridge to another is dropped; each still
	// reaches its gateway and the outside.
	PolicySameBridge = "same-bridge"
	// PolicyIsolated: same-bridge plus icc off: containers on the same
	// bridge cannot reach each other; the gateway (host), the outside and
	// published ports still work.
	PolicyIsolated = "isolated"
)

// Isolation is what the firewall plugin installs for one attachment.
type Isolation struct {
	Network     string // CNI network name
	ContainerID string
	IfName      string
	// IPs are the container's addresses (base rules accept traffic from
	// them and replies to them). On DEL they may be empty: the backend then
	// removes whatever it holds for the attachment.
	IPs []*net.IPNet
	// Policy is PolicyOpen, PolicySameBridge or PolicyIsolated ("" = open).
	Policy string
	// Bridge is the network's bridge (prevResult's first interface, as
	// the reference reads it). Needed for same-bridge and isolated.
	Bridge string
	// HostVeth is the bridge port of the container (the host end of its
	// veth). Needed for isolated.
	HostVeth string
}

// Validate checks the fields a policy needs; errors are code 7 and name the
// field.
func (a Isolation) Validate() error {
	switch a.Policy {
	case "", PolicyOpen:
		return nil
	case PolicySameBridge, PolicyIsolated:
	default:
		return cni.InvalidField("firewall", "ingressPolicy", fmt.Sprintf("%q", a.Policy),
			fmt.Sprintf("must be %q, %q or %q", PolicyOpen, PolicySameBridge, PolicyIsolated))
	}
	if link.ValidName(a.Bridge) != nil {
		return cni.Errorf(cni.CodeInvalidConfig, "firewall: ingressPolicy %s: prevResult has no bridge interface (got %q): chain firewall after bridge", a.Policy, a.Bridge)
	}
	if a.Policy == PolicyIsolated && link.ValidName(a.HostVeth) != nil {
		return cni.Errorf(cni.CodeInvalidConfig, "firewall: ingressPolicy isolated: prevResult has no host-side veth (got %q): chain firewall after bridge", a.HostVeth)
	}
	return nil
}

// Isolator installs base rules and ingress policies. All methods are
// idempotent; every call acts on the calling thread's network namespace.
type Isolator interface {
	AddIsolation(a Isolation) error
	DelIsolation(a Isolation) error
	// CheckIsolation returns an error naming what is missing.
	CheckIsolation(a Isolation) error
	// GCIsolation removes the network's entries of attachments not in valid.
	GCIsolation(network string, valid map[cni.Attachment]bool) error
}

// NewIsolator returns the Isolator of a backend: "" or "nftables" (the
// default) or "iptables". adminChain is the iptables chain jumped to first
// (the reference's iptablesAdminChainName, default CNI-ADMIN); the nftables
// backend has its own admin chain, fw-admin.
func NewIsolator(backend, adminChain string) (Isolator, error) {
	switch backend {
	case "", NFTables:
		return nftIso{}, nil
	case IPTables:
		if adminChain == "" {
			adminChain = "CNI-ADMIN"
		}
		return iptIso{admin: adminChain}, nil
	}
	return nil, unknownBackend(backend)
}
