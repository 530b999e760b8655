package link

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/crashpoint"
)

// VlanName is the name berth gives the 802.1q sub-interface of parent for
// vid, the iproute2/Docker convention "eth0.100", or "" when that does not
// fit in an interface name.
func VlanName(parent string, vid int) string {
	n := parent + "." + strconv.Itoa(vid)
	if len(n) > 15 {
		return ""
	}
	return n
}

// SplitVlanName splits "eth0.100" into "eth0" and 100; ok is false when the
// name does not end in a dot and a number.
func SplitVlanName(name string) (parent string, vid int, ok bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || i == len(name)-1 {
		return "", 0, false
	}
	vid, err := strconv.Atoi(name[i+1:])
	if err != nil || name[i+1] == '+' || name[i+1] == '-' {
		return "", 0, false
	}
	return name[:i], vid, true
}

// Vlan describes an 802.1q sub-interface.
type Vlan struct {
	Name   string
	Parent netlink.Link
	ID     int
	MTU    int // 0: the parent's
	Alias  string
}

// CrashBeforeVlanAlias is the crash point (tests, -tags crashpoint)
// between creating a sub-interface and naming its owner.
const CrashBeforeVlanAlias = "vlan-before-alias"

// ErrNoVlanSupport means the kernel cannot make 802.1q sub-interfaces (no
// 8021q module).
var ErrNoVlanSupport = errors.New("the kernel has no 802.1q VLAN support (module 8021q)")

// AddVlan creates the sub-interface, up, with its owner in its alias, and
// returns it. EEXIST is returned as is: the caller decides whether the
// existing link is the one it wanted.
//
// Same as: ip link add link PARENT name NAME [mtu M] up type vlan id VID; ip link set NAME alias ALIAS
func AddVlan(h *netlink.Handle, v Vlan) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = v.Name
	attrs.ParentIndex = v.Parent.Attrs().Index
	attrs.MTU = v.MTU
	attrs.Flags = net.FlagUp
	err := h.LinkAdd(&netlink.Vlan{LinkAttrs: attrs, VlanId: v.ID, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q})
	if errors.Is(err, unix.EOPNOTSUPP) {
		// "Unknown device type": no rtnl_link_ops for "vlan".
		return nil, fmt.Errorf("create %s on %s: %w", v.Name, v.Parent.Attrs().Name, ErrNoVlanSupport)
	}
	if err != nil {
		return nil, fmt.Errorf("create VLAN %d sub-interface %s on %s: %w", v.ID, v.Name, v.Parent.Attrs().Name, err)
	}
	l, err := h.LinkByName(v.Name)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", v.Name, err)
	}
	crashpoint.Hit(CrashBeforeVlanAlias)
	if err := setAlias(h, l, v.Alias); err != nil {
		_ = h.LinkDel(l) // a link without its owner is nobody's
		return nil, err
	}
	return l, nil
}
