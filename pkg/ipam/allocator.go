package ipam

import (
	"fmt"
	"net/netip"

	"github.com/berthnet/berth/pkg/cni"
)

// maxMisses is how many taken addresses the search tries one by one (one
// link(2) each) before it lists the directory.
const maxMisses = 16

// Allocate reserves a free address of set (range set number idx) for o,
// round-robin: the search starts after the set's last reserved address, as
// the reference's does, so freed addresses are not reused at once.
//
// The common case costs one exclusive file creation. After a run of taken
// addresses the directory is listed once (names only) and the rest are
// skipped in memory, so a fragmented /16 never costs a file operation per
// address. A full set is a code-100 error naming its ranges.
func Allocate(s *Store, set RangeSet, idx int, o Owner) (netip.Addr, *Range, error) {
	if len(set) == 0 {
		return netip.Addr{}, nil, fmt.Errorf("range set %d is empty", idx)
	}
	c := cursor{set: set}
	if last, ok := s.LastReserved(idx); ok {
		for i := range set {
			if set[i].Contains(last) {
				c.ri, c.cur = i, last
				c.next()
				break
			}
		}
	}
	if !c.cur.IsValid() {
		c.ri, c.cur = 0, set[0].Start
	}
	startRi, start := c.ri, c.cur
	misses := 0
	for {
		r := &set[c.ri]
		if c.cur != r.Gateway && !s.Used(c.cur) {
			ok, err := s.Reserve(c.cur, o, idx)
			if err != nil {
				return netip.Addr{}, nil, err
			}
			if ok {
				return c.cur, r, nil
			}
			// Past a run of taken addresses, list the directory once
			// and skip the rest of them in memory.
			if misses++; misses == maxMisses {
				if err := s.LoadUsed(); err != nil {
					return netip.Addr{}, nil, err
				}
			}
		}
		c.next()
		if c.ri == startRi && c.cur == start {
			return netip.Addr{}, nil, cni.Errorf(cni.CodeAddressExhausted, "%s: no free address in %s", Plugin, set)
		}
	}
}

// cursor walks the addresses of a range set, wrapping from the end of the
// last range to the start of the first.
type cursor struct {
	set RangeSet
	ri  int
	cur netip.Addr
}

func (c *cursor) next() {
	if c.cur == c.set[c.ri].End {
		c.ri = (c.ri + 1) % len(c.set)
		c.cur = c.set[c.ri].Start
		return
	}
	c.cur = c.cur.Next()
}
