package link

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// MacvlanModes maps the CNI config's mode names to the kernel's.
var MacvlanModes = map[string]netlink.MacvlanMode{
	"bridge":   netlink.MACVLAN_MODE_BRIDGE,
	"private":  netlink.MACVLAN_MODE_PRIVATE,
	"vepa":     netlink.MACVLAN_MODE_VEPA,
	"passthru": netlink.MACVLAN_MODE_PASSTHRU,
	"source":   netlink.MACVLAN_MODE_SOURCE,
}

// Macvlan describes a macvlan child of Parent (a link in the namespace of
// the handle that creates it) created directly inside NS under its final
// name: one netlink request, no temporary name, no move. NS nil: the child
// stays beside its parent (a host-side shim).
type Macvlan struct {
	Name   string
	Parent netlink.Link
	Mode   netlink.MacvlanMode
	MTU    int              // 0: the parent's
	MAC    net.HardwareAddr // nil: kernel-chosen
	NS     *NS
	// Alias is stored on the link: its owner, so that DEL and GC remove
	// only what they made.
	Alias string
	Up    bool
	// BCQueueLen is the broadcast queue length; 0: the kernel's default.
	BCQueueLen uint32
}

// AddMacvlan creates the child and returns it as seen from the namespace
// it lives in.
//
// Same as: ip link add NAME link PARENT [address MAC] [mtu M] [up] netns NS type macvlan mode MODE [bcqueuelen N]; ip link set NAME alias ALIAS
func AddMacvlan(h *netlink.Handle, m Macvlan) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = m.Name
	attrs.ParentIndex = m.Parent.Attrs().Index
	attrs.MTU = m.MTU
	attrs.HardwareAddr = m.MAC
	if m.Up {
		attrs.Flags = net.FlagUp
	}
	in := h
	if m.NS != nil {
		attrs.Namespace = netlink.NsFd(m.NS.FD())
		in = m.NS.Handle
	}
	err := h.LinkAdd(&netlink.Macvlan{LinkAttrs: attrs, Mode: m.Mode, BCQueueLen: m.BCQueueLen})
	if errors.Is(err, unix.EEXIST) && m.NS != nil {
		// Kernels before 6.x make the link in the parent's namespace and
		// then move it, so the name must also be free there (a container's
		// eth0 on a host with an eth0): a temporary name, renamed inside.
		err = addRenamed(h, m, attrs)
	}
	if err != nil {
		return nil, fmt.Errorf("create macvlan %s on %s: %w", m.Name, m.Parent.Attrs().Name, err)
	}
	l, err := in.LinkByName(m.Name)
	if err != nil {
		return nil, fmt.Errorf("look up macvlan %s: %w", m.Name, err)
	}
	if err := setAlias(in, l, m.Alias); err != nil {
		_ = in.LinkDel(l) // a link without its owner is nobody's
		return nil, err
	}
	return l, nil
}

// addRenamed creates the macvlan under a random temporary name and renames
// it to its own inside m.NS.
//
// Same as: ip link add TMP link PARENT netns NS type macvlan …; ip -n NS link set TMP name NAME [up]
func addRenamed(h *netlink.Handle, m Macvlan, attrs netlink.LinkAttrs) error {
	tmp, err := randomMAC()
	if err != nil {
		return err
	}
	attrs.Name = fmt.Sprintf("bmvtmp%x", []byte(tmp[1:5]))
	up := attrs.Flags&net.FlagUp != 0
	attrs.Flags &^= net.FlagUp // renaming needs the link down
	if err := h.LinkAdd(&netlink.Macvlan{LinkAttrs: attrs, Mode: m.Mode, BCQueueLen: m.BCQueueLen}); err != nil {
		return err
	}
	l, err := m.NS.Handle.LinkByName(attrs.Name)
	if err == nil {
		err = m.NS.Handle.LinkSetName(l, m.Name)
	}
	if err == nil && up {
		err = m.NS.Handle.LinkSetUp(l)
	}
	if err != nil {
		if l != nil {
			_ = m.NS.Handle.LinkDel(l)
		}
		return fmt.Errorf("rename %s to %s: %w", attrs.Name, m.Name, err)
	}
	return nil
}

// setAlias stores the owner on a new link: the kernel ignores an alias
// given in the creation request. A crash between the two leaves a link
// without alias, which callers account for (pkg/linkref's pending mark).
func setAlias(h *netlink.Handle, l netlink.Link, alias string) error {
	if alias == "" {
		return nil
	}
	if err := h.LinkSetAlias(l, alias); err != nil {
		return fmt.Errorf("set alias of %s: %w", l.Attrs().Name, err)
	}
	l.Attrs().Alias = alias
	return nil
}

// SetAlias marks an existing link as owned (adopting one whose creator
// died before setting its alias).
//
// Same as: ip link set NAME alias ALIAS
func SetAlias(h *netlink.Handle, l netlink.Link, alias string) error { return setAlias(h, l, alias) }

// DelOwned deletes the named link if its alias is one of owners; a missing
// link, or one owned by someone else, is left alone (the result says which).
//
// Same as: ip link del NAME (after checking ip -d link show NAME's alias)
func DelOwned(h *netlink.Handle, name string, owners ...string) (deleted bool, err error) {
	l, err := h.LinkByName(name)
	if err != nil {
		if IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("look up %s: %w", name, err)
	}
	if !slices.Contains(owners, l.Attrs().Alias) {
		return false, nil
	}
	if err := h.LinkDel(l); err != nil && !IsNotFound(err) {
		return false, fmt.Errorf("delete %s: %w", name, err)
	}
	return true, nil
}

// IsMacvlan reports whether l is a macvlan or macvtap child, which the
// kernel refuses as another macvlan's parent only in some cases (it
// silently re-parents to the lower device otherwise): berth refuses it
// always, with a clear error.
func IsMacvlan(l netlink.Link) bool {
	switch l.Type() {
	case "macvlan", "macvtap":
		return true
	}
	return false
}

// DefaultRouteLink returns the link of the namespace's first IPv4 default
// route, else its first IPv6 one; os-style "not found" when there is none.
//
// Same as: ip -4 route show default; ip -6 route show default
func DefaultRouteLink(h *netlink.Handle) (netlink.Link, error) {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := RouteListFiltered(h, fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			idx := r.LinkIndex
			if idx == 0 && len(r.MultiPath) > 0 {
				idx = r.MultiPath[0].LinkIndex
			}
			if idx == 0 {
				continue
			}
			return h.LinkByIndex(idx)
		}
	}
	return nil, ErrNoDefaultRoute
}

// ErrNoDefaultRoute is DefaultRouteLink's answer when there is none.
var ErrNoDefaultRoute = errors.New("no default route")
