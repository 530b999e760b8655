package link

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// dumpAttempts bounds the retries of an interrupted dump. Each retry is a
// new dump; it is interrupted only when the table changed while it ran, so
// a handful of attempts outlast any burst of concurrent ADDs.
const dumpAttempts = 20

// retryDump runs a netlink dump until it completes without
// NLM_F_DUMP_INTR: netlink sets that flag when the table changed during the
// dump (another ADD making a veth), and vishvananda/netlink then returns
// partial results with netlink.ErrDumpInterrupted. A partial list is no
// answer (an address or route could be missing), so the dump is repeated.
// This is the one place berth's dumps go through.
func retryDump[T any](dump func() (T, error)) (T, error) {
	var (
		res T
		err error
	)
	for i := 0; i < dumpAttempts; i++ {
		res, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return res, err
		}
	}
	return res, err
}

// LinkList lists the links of h's namespace (h nil: the calling thread's).
//
// Same as: ip link show
func LinkList(h *netlink.Handle) ([]netlink.Link, error) {
	return retryDump(func() ([]netlink.Link, error) {
		if h == nil {
			return netlink.LinkList()
		}
		return h.LinkList()
	})
}

// AddrList lists the addresses of l (nil: of every link) of family fam.
//
// Same as: ip addr show [dev LINK]
func AddrList(h *netlink.Handle, l netlink.Link, fam int) ([]netlink.Addr, error) {
	return retryDump(func() ([]netlink.Addr, error) {
		if h == nil {
			return netlink.AddrList(l, fam)
		}
		return h.AddrList(l, fam)
	})
}

// RouteList lists the main table's routes through l (nil: all).
//
// Same as: ip route show [dev LINK]
func RouteList(h *netlink.Handle, l netlink.Link, fam int) ([]netlink.Route, error) {
	return retryDump(func() ([]netlink.Route, error) {
		if h == nil {
			return netlink.RouteList(l, fam)
		}
		return h.RouteList(l, fam)
	})
}

// RouteListFiltered lists the routes matching filter on the fields in mask.
//
// Same as: ip route show table all …
func RouteListFiltered(h *netlink.Handle, fam int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	return retryDump(func() ([]netlink.Route, error) {
		if h == nil {
			return netlink.RouteListFiltered(fam, filter, mask)
		}
		return h.RouteListFiltered(fam, filter, mask)
	})
}

// ConntrackDeleteFilters deletes the conntrack entries matching any of
// filters. It dumps the table first; an interrupted dump may have missed
// entries, so the whole (idempotent) deletion is repeated.
//
// Same as: conntrack -D [filters]
func ConntrackDeleteFilters(table netlink.ConntrackTableType, fam netlink.InetFamily, filters ...netlink.CustomConntrackFilter) (uint, error) {
	var total uint
	_, err := retryDump(func() (struct{}, error) {
		n, err := netlink.ConntrackDeleteFilters(table, fam, filters...)
		total += n
		return struct{}{}, err
	})
	return total, err
}
