package firewall

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Published is one published port as the nftables port maps hold it, with
// the attachment that owns it (from the element's tag). It is what
// `berth port` and `berth network inspect` show, so a port chosen by portmap
// (hostPort 0) shows as the kernel has it.
type Published struct {
	// Tag is the owner tag "<network>/<containerID>/<ifname>" (a part
	// longer than 80 bytes is a hash, see tag).
	Tag           string
	Network       string
	ContainerID   string
	IfName        string
	Protocol      string
	HostIP        net.IP // nil: every host address
	HostPort      int
	ContainerIP   net.IP
	ContainerPort int
}

// OwnedBy reports whether p belongs to the attachment (tags compare the
// shortened parts, so long names still match).
func (p Published) OwnedBy(network, containerID, ifName string) bool {
	return p.Tag == tag(network, containerID, ifName)
}

// ListPublished reads every published port of the nftables backend in the
// calling thread's namespace. No table is no port, not an error. Reading
// nftables needs CAP_NET_ADMIN.
func ListPublished() ([]Published, error) {
	c, err := tableConn()
	if err != nil || c == nil {
		return nil, err
	}
	var out []Published
	t := nftTable()
	for _, f := range []family{v4, v6} {
		for _, specific := range []bool{false, true} {
			s := portsMap(t, f, specific)
			els, err := dumpElements(c, s)
			if err != nil {
				return nil, err
			}
			for _, e := range els {
				p, ok := decodePort(f, specific, e)
				if ok {
					out = append(out, p)
				}
			}
		}
	}
	return out, nil
}

// decodePort reverses elemsOf: key [hostIP .] proto . port, value
// containerIP . port, each field padded to 32-bit registers.
func decodePort(f family, specific bool, e nftables.SetElement) (Published, bool) {
	al := int(f.addrLen)
	key, val := e.Key, e.Val
	p := Published{Tag: e.Comment}
	if specific {
		if len(key) < al {
			return p, false
		}
		p.HostIP = net.IP(append([]byte(nil), key[:al]...))
		key = key[al:]
	}
	if len(key) < 8 || len(val) < al+4 {
		return p, false
	}
	switch key[0] {
	case unix.IPPROTO_TCP:
		p.Protocol = "tcp"
	case unix.IPPROTO_UDP:
		p.Protocol = "udp"
	case unix.IPPROTO_SCTP:
		p.Protocol = "sctp"
	default:
		p.Protocol = fmt.Sprint(key[0])
	}
	p.HostPort = int(binary.BigEndian.Uint16(key[4:6]))
	p.ContainerIP = net.IP(append([]byte(nil), val[:al]...))
	p.ContainerPort = int(binary.BigEndian.Uint16(val[al : al+2]))
	if parts := strings.Split(e.Comment, "/"); len(parts) == 3 {
		p.Network, p.ContainerID, p.IfName = parts[0], parts[1], parts[2]
	}
	return p, true
}

// allTaggedSets are every set and map of berth's tables whose elements
// carry a tag: masquerade, port mappings, isolation. The isolation sets
// also hold per-network elements tagged with the network's name alone (its
// bridge).
func allTaggedSets(c *nftables.Conn) ([]*nftables.Set, error) {
	inet, br, err := isoTablesExist(c)
	if err != nil {
		return nil, err
	}
	var sets []*nftables.Set
	if inet {
		t := nftTable()
		sets = append(sets, masqMap(t, v4), masqMap(t, v6))
		sets = append(sets, taggedSets(t)...)
		sets = append(sets, isoAllowSet(t, v4), isoAllowSet(t, v6), isoBridgesSet(t), isoSameSet(t))
	}
	if br {
		sets = append(sets, isoIccSet(isoBridgeTable()))
	}
	return sets, nil
}

// ofNetwork matches the tags of a network: its attachments' elements and
// its own (bridge) elements.
func ofNetwork(network string) func(string) bool {
	n := shorten(network)
	return func(s string) bool { return s == n || tagNetwork(s) == n }
}

// NetworkElements counts, per set, the nftables elements tagged with the
// network (what RemoveNetwork would delete).
func NetworkElements(network string) (map[string]int, error) {
	c, err := newConn()
	if err != nil {
		return nil, err
	}
	sets, err := allTaggedSets(c)
	if err != nil {
		return nil, err
	}
	match := ofNetwork(network)
	out := map[string]int{}
	for _, s := range sets {
		els, err := dumpElements(c, s)
		if err != nil {
			return nil, err
		}
		for _, e := range els {
			if match(e.Comment) {
				out[s.Name]++
			}
		}
	}
	return out, nil
}

// RemoveNetwork deletes every nftables element tagged with the network, in
// one transaction: for a network with no attachment left (berth network
// prune). Elements of other networks and untagged ones are never touched.
func RemoveNetwork(network string) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	sets, err := allTaggedSets(c)
	if err != nil || len(sets) == 0 {
		return err
	}
	return deleteTagged(c, sets, ofNetwork(network))
}

// ListPublishedIPTables reads the published ports of the iptables backend
// (the DNAT rules of BERTH-HOSTPORT-DNAT, both families) in the calling
// thread's namespace. No chain is no port; a missing iptables binary is an
// error the caller may ignore when it does not use that backend.
func ListPublishedIPTables() ([]Published, error) {
	ipts, err := iptBoth()
	if err != nil {
		return nil, err
	}
	var out []Published
	for _, ipt := range ipts {
		rules, err := taggedRules(ipt, "nat", iptDNATChain, func(s string) bool { return tagNetwork(s) != "" })
		if err != nil {
			return nil, err
		}
		for _, spec := range rules {
			if p, ok := decodeDNATRule(spec); ok {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// decodeDNATRule reverses iptRules' DNAT rule:
// [-d hostIP/32] -p tcp -m tcp --dport 8080 -m comment --comment <tag> -j DNAT --to-destination 172.17.0.2:80
func decodeDNATRule(spec []string) (Published, bool) {
	var p Published
	for i := 0; i+1 < len(spec); i++ {
		v := spec[i+1]
		switch spec[i] {
		case "-d":
			ip, _, err := net.ParseCIDR(v)
			if err != nil {
				ip = net.ParseIP(v)
			}
			p.HostIP = ip
		case "-p":
			p.Protocol = v
		case "--dport":
			port, err := strconv.Atoi(v)
			if err != nil {
				return p, false
			}
			p.HostPort = port
		case "--comment":
			p.Tag = v
		case "--to-destination":
			host, port, err := net.SplitHostPort(v)
			if err != nil {
				return p, false
			}
			cp, err := strconv.Atoi(port)
			if err != nil {
				return p, false
			}
			p.ContainerIP, p.ContainerPort = net.ParseIP(host), cp
		}
	}
	if p.HostPort == 0 || p.ContainerIP == nil || p.Tag == "" {
		return p, false
	}
	if parts := strings.Split(p.Tag, "/"); len(parts) == 3 {
		p.Network, p.ContainerID, p.IfName = parts[0], parts[1], parts[2]
	}
	return p, true
}
