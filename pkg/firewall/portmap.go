package firewall

import (
	"fmt"
	"net"
	"strings"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PortMapping publishes HostPort on the host (on HostIP only when set) to
// ContainerPort of the container, like `docker run -p [hostIP:]8080:80/tcp`.
type PortMapping struct {
	HostPort      int
	ContainerPort int
	Protocol      string // "tcp", "udp" or "sctp"
	HostIP        net.IP // nil or unspecified: every host address
}

func (p PortMapping) String() string {
	host := ""
	if len(p.HostIP) > 0 && !p.HostIP.IsUnspecified() {
		host = p.HostIP.String() + ":"
	}
	return fmt.Sprintf("%s%d:%d/%s", host, p.HostPort, p.ContainerPort, p.Protocol)
}

// MappingsString is ms for messages: "8080:80/tcp,53:53/udp".
func MappingsString(ms []PortMapping) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.String()
	}
	return strings.Join(s, ",")
}

// PortMap is the published ports of one attachment.
type PortMap struct {
	Network     string
	ContainerID string
	IfName      string
	// ContainerIPs with their subnet's mask (the prevResult's addresses).
	// Mappings go to the address of the same family as the traffic. On
	// DEL they may be empty: entries are then found by (ContainerID,
	// IfName).
	ContainerIPs []*net.IPNet
	Mappings     []PortMapping
	// SNAT masquerades the traffic that would otherwise not come back
	// through the host: from localhost and from containers of the same
	// subnet reaching a published port through a host address (hairpin).
	SNAT bool
	// MasqAll masquerades every connection to a published port.
	MasqAll bool

	// iptables backend only (the reference plugin's fields).
	ConditionsV4 []string
	ConditionsV6 []string
}

// PortMapper manages port mappings. All methods are idempotent, and act on
// the calling thread's network namespace.
type PortMapper interface {
	// AddPorts publishes the mappings. A mapping whose host side is
	// already published by another attachment fails the whole call with a
	// cni.CodeConflict error naming it, and nothing is added.
	AddPorts(p PortMap) error
	DelPorts(p PortMap) error
	// CheckPorts returns an error naming what is missing.
	CheckPorts(p PortMap) error
	// GCPorts removes the network's mappings of attachments not in valid.
	GCPorts(network string, valid map[cni.Attachment]bool) error
}

// NewPortMapper returns the PortMapper of a backend: "" or "nftables" (the
// default) or "iptables". Any other name is a code-7 CNI error.
func NewPortMapper(backend string) (PortMapper, error) {
	switch backend {
	case "", NFTables:
		return nftPorts{}, nil
	case IPTables:
		return iptPorts{}, nil
	}
	return nil, unknownBackend(backend)
}

// protoNum is the IP protocol number of a mapping's protocol.
func protoNum(p string) (byte, error) {
	switch strings.ToLower(p) {
	case "tcp":
		return unix.IPPROTO_TCP, nil
	case "udp":
		return unix.IPPROTO_UDP, nil
	case "sctp":
		return unix.IPPROTO_SCTP, nil
	}
	return 0, fmt.Errorf("protocol %q: must be tcp, udp or sctp", p)
}

// targets pairs each mapping with the container address of each family it
// applies to: a mapping with a HostIP applies to that family only.
func targets(p PortMap) []target {
	var out []target
	for _, m := range p.Mappings {
		for _, ipn := range p.ContainerIPs {
			f := familyOf(ipn.IP)
			if len(m.HostIP) > 0 && !m.HostIP.IsUnspecified() && familyOf(m.HostIP).nfproto != f.nfproto {
				continue
			}
			out = append(out, target{m: m, ctr: ipn, f: f})
		}
	}
	return out
}

type target struct {
	m   PortMapping
	ctr *net.IPNet
	f   family
}

func (t target) specific() bool { return len(t.m.HostIP) > 0 && !t.m.HostIP.IsUnspecified() }

// FlushUDPConntrack deletes the conntrack entries of UDP traffic to the
// mappings' host ports, so that a client that kept sending to a port
// (conntrack keeps its old DNAT, or none) reaches the new container.
func FlushUDPConntrack(p PortMap) error {
	for _, t := range targets(p) {
		if !strings.EqualFold(t.m.Protocol, "udp") {
			continue
		}
		var hostIP net.IP
		if t.specific() {
			hostIP = t.m.HostIP
		}
		if err := flushUDP(t.f, t.m.HostPort, hostIP, nil); err != nil {
			return fmt.Errorf("flushing udp conntrack for %s: %w", t.m, err)
		}
	}
	return nil
}

// flushUDPTo deletes the conntrack entries of UDP traffic to hostPort that
// was DNATed to ctrIP.
func flushUDPTo(f family, hostPort int, ctrIP net.IP) error {
	return flushUDP(f, hostPort, nil, ctrIP)
}

// flushUDP deletes the conntrack entries of family f for UDP to hostPort,
// only those to hostIP and answered by replyIP when set.
func flushUDP(f family, hostPort int, hostIP, replyIP net.IP) error {
	fam := netlink.InetFamily(unix.AF_INET)
	if f.nfproto == v6.nfproto {
		fam = unix.AF_INET6
	}
	filt := &netlink.ConntrackFilter{}
	if err := filt.AddProtocol(unix.IPPROTO_UDP); err != nil {
		return fmt.Errorf("conntrack filter: %w", err)
	}
	if err := filt.AddPort(netlink.ConntrackOrigDstPort, uint16(hostPort)); err != nil {
		return fmt.Errorf("conntrack filter: %w", err)
	}
	for _, ip := range []struct {
		t  netlink.ConntrackFilterType
		ip net.IP
	}{{netlink.ConntrackOrigDstIP, hostIP}, {netlink.ConntrackReplySrcIP, replyIP}} {
		if ip.ip == nil {
			continue
		}
		if err := filt.AddIP(ip.t, ip.ip); err != nil {
			return fmt.Errorf("conntrack filter: %w", err)
		}
	}
	if _, err := link.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filt); err != nil {
		return err
	}
	return nil
}
