package firewall

import (
	"bytes"
	"fmt"
	"net"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// One container, one host port, several networks. Podman hands a
// container's port mappings to every network it joins, so portmap is asked
// to publish the same host port once per attachment of the container. The
// port map holds one element per host port, so one attachment serves it
// (the first); each other attachment of the same container keeps its own
// element, tagged with its own tag, in ports-standby4/6. When the serving
// attachment goes (DEL, GC), the same transaction that deletes its element
// puts a standby of the same container in its place, so the publication
// never lapses and no other container can take the port in between; it
// goes with the container's last attachment publishing it. Another
// container's element under the key is still a conflict (code 101).
//
// The standby maps are empty unless a container publishes on more than one
// network, and are read (one dump of one family's map) only by a DEL that
// removes a serving element.

func standbyMap(t *nftables.Table, f family) *nftables.Set {
	return &nftables.Set{Table: t, Name: "ports-standby" + f.suffix(), IsMap: true, Concatenation: true,
		KeyType:  mustConcat(nftables.TypeIP6Addr, f.addrType, nftables.TypeInetProto, nftables.TypeInetService),
		DataType: mustConcat(f.addrType, nftables.TypeInetService)}
}

// servedBy is the port map and key a standby element stands in for:
// its key without the tag's hash, the host address dropped when it is 0
// (every address).
func servedBy(t *nftables.Table, f family, standbyKey []byte) (*nftables.Set, []byte) {
	rest := standbyKey[16:]
	hostAddr := rest[:f.addrLen]
	if bytes.Equal(hostAddr, make([]byte, f.addrLen)) {
		return portsMap(t, f, false), rest[f.addrLen:]
	}
	return portsMap(t, f, true), rest
}

// promotion is a serving element to delete and, when the container has a
// standby for it, the standby that takes its place.
type promotion struct {
	f       family
	active  keyed
	oldVal  []byte // the deleted element's data: the old container side
	standby *nftables.SetElement
}

// queue adds the promotion to the transaction: the serving element goes,
// the standby (if any) moves into the port map under its own tag.
func (pr promotion) queue(c *nftables.Conn, t *nftables.Table) error {
	if err := c.SetDeleteElements(pr.active.set, []nftables.SetElement{{Key: pr.active.key}}); err != nil {
		return fmt.Errorf("nftables: %s: %w", pr.active.set.Name, err)
	}
	if pr.standby == nil {
		return nil
	}
	el := nftables.SetElement{Key: pr.active.key, Val: pr.standby.Val, Comment: pr.standby.Comment}
	if err := c.SetAddElements(pr.active.set, []nftables.SetElement{el}); err != nil {
		return fmt.Errorf("nftables: %s: %w", pr.active.set.Name, err)
	}
	sb := standbyMap(t, pr.f)
	if err := c.SetDeleteElements(sb, []nftables.SetElement{{Key: pr.standby.Key}}); err != nil {
		return fmt.Errorf("nftables: %s: %w", sb.Name, err)
	}
	return nil
}

// standbyFor finds, among standby elements of family f, one of the same
// container as owner for the port map element active; keep says which
// standby elements may serve (not being removed themselves).
func standbyFor(t *nftables.Table, f family, standbys []nftables.SetElement, active keyed, owner string, keep func(string) bool) *nftables.SetElement {
	for i, el := range standbys {
		if len(el.Key) < 16+int(f.addrLen) || el.Comment == owner || !sameContainer(el.Comment, owner) || !keep(el.Comment) {
			continue
		}
		s, k := servedBy(t, f, el.Key)
		if s.Name == active.set.Name && bytes.Equal(k, active.key) {
			return &standbys[i]
		}
	}
	return nil
}

// delKnown is DelPorts when the attachment's keys are known (targets from
// prevResult): each is looked up (one GET), those carrying tg are deleted
// in one transaction, and a serving element's place goes to a standby of
// the same container. If a concurrent change removed one in between, the
// transaction fails and release (dumps, by tag) finishes the job.
func (np nftPorts) delKnown(tgts []target, tg string) error {
	t := nftTable()
	nl, err := dialNetfilter()
	if err != nil {
		return err
	}
	// One socket for all the look-ups.
	defer nl.Close()
	ks := []keyed{{refMap(portsRefs), refKey(tg)}}
	var serving []promotion
	for _, tgt := range tgts {
		e, err := elemsOf(tgt, tg)
		if err != nil {
			return err
		}
		active := keyed{portsMap(t, tgt.f, tgt.specific()), e.dnat.Key}
		comment, found, err := elementComment(nl, active)
		if err != nil {
			return err
		}
		ks = append(ks, keyed{masqAllSet(t, tgt.f), e.all.Key})
		if found && comment == tg {
			serving = append(serving, promotion{f: tgt.f, active: active, oldVal: e.dnat.Val})
		} else {
			// Not serving: it may be waiting in standby (a serving
			// attachment has no standby element, so the common DEL
			// looks up no more keys than before standbys existed).
			ks = append(ks, keyed{standbyMap(t, tgt.f), e.standby.Key})
		}
	}
	var owned []keyed
	for _, k := range ks {
		comment, found, err := elementComment(nl, k)
		if err != nil {
			return err
		}
		if found && comment == tg {
			owned = append(owned, k)
		}
	}
	if len(serving) == 0 && len(owned) == 0 {
		return nil
	}
	// One socket for the dumps and the transaction.
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(keepSocket))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	standbys := map[byte][]nftables.SetElement{}
	for i, pr := range serving {
		sb, ok := standbys[pr.f.nfproto]
		if !ok {
			if sb, err = dumpElements(c, standbyMap(t, pr.f)); err != nil {
				return err
			}
			standbys[pr.f.nfproto] = sb
		}
		serving[i].standby = standbyFor(t, pr.f, sb, pr.active, tg, func(string) bool { return true })
		if err := serving[i].queue(c, t); err != nil {
			return err
		}
	}
	for _, k := range owned {
		if err := c.SetDeleteElements(k.set, []nftables.SetElement{{Key: k.key}}); err != nil {
			return fmt.Errorf("nftables: %s: %w", k.set.Name, err)
		}
	}
	if err := c.Flush(); err != nil {
		if !isNotExist(err) {
			return fmt.Errorf("nftables: removing port mappings of %s: %w", tg, err)
		}
		return np.release(func(s string) bool { return s == tg })
	}
	flushPromoted(serving)
	return nil
}

// release removes the port-mapping elements whose tag satisfies drop (DEL
// without prevResult, GC), promoting a standby of the same container,
// which drop spares, in place of each serving element removed. One dump of
// each tagged set and one transaction per attempt, retried when an element
// went in between (a concurrent DEL). Without the table there is nothing
// to do, and nothing is created.
func (nftPorts) release(drop func(string) bool) error {
	c, err := tableConn()
	if err != nil || c == nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// A failed transaction leaves the connection's batch unusable.
			if c, err = newConn(); err != nil {
				return err
			}
		}
		promoted, err := releaseOnce(c, drop)
		if err == nil {
			flushPromoted(promoted)
			return nil
		}
		if !isNotExist(err) || attempt == 2 {
			return err
		}
	}
}

func releaseOnce(c *nftables.Conn, drop func(string) bool) ([]promotion, error) {
	t := nftTable()
	keep := func(s string) bool { return !drop(s) }
	var prs []promotion
	n := 0
	for _, f := range []family{v4, v6} {
		standbys, err := dumpElements(c, standbyMap(t, f))
		if err != nil {
			return nil, err
		}
		for _, specific := range []bool{false, true} {
			s := portsMap(t, f, specific)
			els, err := dumpElements(c, s)
			if err != nil {
				return nil, err
			}
			for _, el := range els {
				if !drop(el.Comment) {
					continue
				}
				pr := promotion{f: f, active: keyed{s, el.Key}, oldVal: el.Val}
				pr.standby = standbyFor(t, f, standbys, pr.active, el.Comment, keep)
				if err := pr.queue(c, t); err != nil {
					return nil, err
				}
				prs = append(prs, pr)
				n++
			}
		}
		// The standbys dropped with their attachments, and each attachment's
		// masqall elements.
		for _, s := range []*nftables.Set{standbyMap(t, f), masqAllSet(t, f)} {
			els := standbys
			if s.Name != standbyMap(t, f).Name {
				if els, err = dumpElements(c, s); err != nil {
					return nil, err
				}
			}
			m, err := queueDropped(c, s, els, drop)
			if err != nil {
				return nil, err
			}
			n += m
		}
	}
	refs := refMap(portsRefs)
	els, err := dumpElements(c, refs)
	if err != nil {
		return nil, err
	}
	m, err := queueDropped(c, refs, els, drop)
	if err != nil {
		return nil, err
	}
	if n += m; n == 0 {
		return nil, nil
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("nftables: removing %d port-mapping elements: %w", n, err)
	}
	return prs, nil
}

// queueDropped queues the deletion of els whose tag satisfies drop.
func queueDropped(c *nftables.Conn, s *nftables.Set, els []nftables.SetElement, drop func(string) bool) (int, error) {
	var del []nftables.SetElement
	for _, e := range els {
		if drop(e.Comment) {
			del = append(del, nftables.SetElement{Key: e.Key})
		}
	}
	if len(del) == 0 {
		return 0, nil
	}
	if err := c.SetDeleteElements(s, del); err != nil {
		return 0, fmt.Errorf("nftables: %s: %w", s.Name, err)
	}
	return len(del), nil
}

// flushPromoted forgets the UDP flows that the promoted host ports' old
// serving attachment answered: conntrack keeps a flow's DNAT to the old
// address (gone with its interface) for as long as the client keeps
// sending. TCP flows to it are dead anyway. Best effort: the port is
// served either way.
func flushPromoted(prs []promotion) {
	for _, pr := range prs {
		if pr.standby == nil {
			continue
		}
		key := pr.active.key
		if pr.active.set.Name == portsMap(nftTable(), pr.f, true).Name {
			key = key[pr.f.addrLen:]
		}
		if len(key) < 8 || key[0] != unix.IPPROTO_UDP || len(pr.oldVal) < int(pr.f.addrLen) {
			continue
		}
		port := int(key[4])<<8 | int(key[5])
		_ = flushUDPTo(pr.f, port, net.IP(pr.oldVal[:pr.f.addrLen]))
	}
}
