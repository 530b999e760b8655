// Package link is berth's netlink layer: bridges, veth pairs, addresses,
// routes and sysctls, each operation bound to a netlink handle of the
// namespace it acts in, so plugins never switch threads between namespaces
// to configure a container. Doc comments give the iproute2 equivalent.
package link

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is an open network namespace with a netlink handle bound to it.
// Close releases both.
type NS struct {
	Path   string
	Handle *netlink.Handle
	fd     netns.NsHandle
}

// OpenNS opens the namespace at path (a /proc/<pid>/ns/net or /run/netns
// bind mount). A missing namespace gives an error satisfying
// errors.Is(err, os.ErrNotExist), which DEL treats as "already gone".
func OpenNS(path string) (*NS, error) {
	fd, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("netns %s: %w", path, os.ErrNotExist)
		}
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	// Any file opens; only a namespace file (nsfs, or /proc/<pid>/ns/net
	// on old kernels) can be entered, and the message should say so.
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(fd), &st); err != nil || (st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC) {
		fd.Close()
		return nil, fmt.Errorf("%s is not a network namespace", path)
	}
	// Only rtnetlink: a handle opens one socket per family it is given
	// (all three by default), each with two setns calls to get there.
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return &NS{Path: path, Handle: h, fd: fd}, nil
}

// FD is the namespace's file descriptor, for creating links inside it.
func (n *NS) FD() int { return int(n.fd) }

// Close releases the handle and the namespace descriptor.
func (n *NS) Close() {
	n.Handle.Close()
	n.fd.Close()
}

// IsNotFound reports whether err is netlink's "no such link" (or an
// address/route that is already gone).
func IsNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ESRCH) ||
		errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT)
}

// BridgeAlias is the interface alias (ifalias) of the bridges berth
// creates: their owner mark.
const BridgeAlias = "berth"

// EnsureBridge returns the bridge called name, creating it first if needed
// with a fixed MAC.
// Concurrent callers (many plugin processes at once) all get the same
// bridge: the loser of the creation race just looks it up.
//
// Same as: ip link add name type bridge mtu M; ip link set name up [promisc on]
func EnsureBridge(h *netlink.Handle, name string, mtu int, promisc bool) (*netlink.Bridge, error) {
	l, err := h.LinkByName(name)
	if err != nil && !IsNotFound(err) {
		return nil, fmt.Errorf("look up bridge %s: %w", name, err)
	}
	if err != nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.MTU = mtu
		// Made down: DAD is turned off (below) before it comes up.
		// A MAC given at creation is pinned (NET_ADDR_SET). Without it a
		// bridge takes the lowest MAC among its ports and changes it as
		// containers come and go, leaving every container's ARP entry for
		// the gateway stale. Setting it later would cost a CHANGEADDR
		// event (a neighbour flush on the bridge) on every call.
		if attrs.HardwareAddr, err = randomMAC(); err != nil {
			return nil, err
		}
		if promisc {
			attrs.Promisc = 1
		}
		br := &netlink.Bridge{LinkAttrs: attrs}
		err := h.LinkAdd(br)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if err == nil {
			// The alias marks the bridge as berth's: `berth network
			// prune` removes only bridges that carry it (and have no
			// port), never one an admin or another plugin made. Only the
			// creator sets it; the kernel ignores IFLA_IFALIAS in the
			// RTM_NEWLINK that creates a link, hence a second message.
			if err := h.LinkSetAlias(br, BridgeAlias); err != nil {
				return nil, fmt.Errorf("mark bridge %s as berth's: %w", name, err)
			}
		}
		if l, err = h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("look up bridge %s: %w", name, err)
		}
		if err := noDAD(name); err != nil {
			return nil, err
		}
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("%s exists and is a %s, not a bridge", name, l.Type())
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(br); err != nil {
			return nil, fmt.Errorf("set bridge %s up: %w", name, err)
		}
	}
	if promisc && br.Attrs().Promisc == 0 {
		if err := h.SetPromiscOn(br); err != nil {
			return nil, fmt.Errorf("set bridge %s promisc: %w", name, err)
		}
	}
	return br, nil
}

// randomMAC is a random unicast, locally administered MAC.
func randomMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("random MAC: %w", err)
	}
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac, nil
}

// Veth describes a veth pair with one end in the current namespace,
// enslaved to Master, and the peer created directly inside the container's
// namespace under its final name: one netlink request, no rename, no move.
type Veth struct {
	HostName string
	Master   netlink.Link // may be nil
	MTU      int
	PeerName string
	PeerMAC  net.HardwareAddr // nil: kernel-chosen
	PeerNS   *NS
	HostUp   bool
	// Alias is the host end's IFLA_IFALIAS (the owner mark, see VethAlias).
	Alias string
}

// AddVeth creates the pair and returns the host end.
//
// Same as: ip link add HOST mtu M master BR up type veth peer name PEER address MAC netns NS
func AddVeth(h *netlink.Handle, v Veth) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = v.HostName
	attrs.MTU = v.MTU
	if v.Master != nil {
		attrs.MasterIndex = v.Master.Attrs().Index
	}
	if v.HostUp {
		attrs.Flags = net.FlagUp
	}
	veth := &netlink.Veth{
		LinkAttrs:        attrs,
		PeerName:         v.PeerName,
		PeerHardwareAddr: v.PeerMAC,
		PeerNamespace:    netlink.NsFd(v.PeerNS.FD()),
		PeerMTU:          uint32(v.MTU),
	}
	if err := h.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s (peer %s): %w", v.HostName, v.PeerName, err)
	}
	host, err := h.LinkByName(v.HostName)
	if err != nil {
		return nil, fmt.Errorf("look up veth %s: %w", v.HostName, err)
	}
	if v.Alias != "" {
		// The kernel ignores IFLA_IFALIAS in a creation request.
		if err := h.LinkSetAlias(host, v.Alias); err != nil {
			_ = h.LinkDel(host)
			return nil, fmt.Errorf("set alias of veth %s: %w", v.HostName, err)
		}
		host.Attrs().Alias = v.Alias
	}
	return host, nil
}

// DelLink deletes the named link; a missing link is not an error.
//
// Same as: ip link del NAME
func DelLink(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		if IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if err := h.LinkDel(l); err != nil && !IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// noDAD turns off duplicate address detection on a new bridge, before it
// comes up. While a device's link-local address is tentative (DAD's second
// or two) the kernel sends no neighbour solicitation from it, so IPv6
// traffic forwarded to the first containers of a new network was dropped
// until DAD ended. The address derives from the bridge's random MAC, and
// the addresses berth puts on it skip DAD already (see addr). A host
// without IPv6 has no such file.
//
// Same as: sysctl -w net.ipv6.conf.NAME.accept_dad=0
func noDAD(name string) error {
	err := WriteSysctl(SysctlPath("net/ipv6/conf/"+name+"/accept_dad"), "0")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bridge %s: accept_dad: %w", name, err)
	}
	return nil
}
