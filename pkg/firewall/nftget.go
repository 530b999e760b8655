package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// keyed is one element of a set, by key.
type keyed struct {
	set *nftables.Set
	key []byte
}

// elementComment asks the kernel for one element by key and returns its
// comment (the owner's tag); found is false when there is no such element,
// set or table. One GET, no dump: its cost does not grow with the set,
// which google/nftables (v0.3.0) has no call for.
//
// Same as: nft get element FAMILY TABLE SET { KEY }
//
// conn is a netfilter netlink socket to use, or nil for one of its own.
func elementComment(conn *netlink.Conn, k keyed) (comment string, found bool, err error) {
	if conn == nil {
		if conn, err = dialNetfilter(); err != nil {
			return "", false, err
		}
		defer conn.Close()
	}
	keyAttr, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: k.key}})
	if err != nil {
		return "", false, err
	}
	elem, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_KEY, Data: keyAttr}})
	if err != nil {
		return "", false, err
	}
	list, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: elem}})
	if err != nil {
		return "", false, err
	}
	data, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(k.set.Table.Name + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(k.set.Name + "\x00")},
		{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: list},
	})
	if err != nil {
		return "", false, err
	}
	// nfgenmsg: family, version, resource id (big endian).
	hdr := []byte{byte(k.set.Table.Family), unix.NFNETLINK_V0, 0, 0}
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM), Flags: netlink.Request},
		Data:   append(hdr, data...),
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("nftables: get element of %s: %w", k.set.Name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		if c, ok := commentOf(m.Data[4:]); ok {
			return c, true, nil
		}
		return "", true, nil
	}
	return "", false, nil
}

// commentOf digs the element comment out of a NEWSETELEM message's
// attributes: ELEMENTS > LIST_ELEM > USERDATA > comment.
func commentOf(b []byte) (string, bool) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return "", false
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		elems, err := netlink.NewAttributeDecoder(ad.Bytes())
		if err != nil {
			return "", false
		}
		for elems.Next() {
			el, err := netlink.NewAttributeDecoder(elems.Bytes())
			if err != nil {
				return "", false
			}
			for el.Next() {
				if el.Type() == unix.NFTA_SET_ELEM_USERDATA {
					return userdata.GetString(el.Bytes(), userdata.NFTNL_UDATA_SET_ELEM_COMMENT)
				}
			}
		}
	}
	return "", false
}

// delOwned deletes, in one transaction, those of ks whose comment is tg:
// each is looked up by key first, so an element under the same key that
// belongs to another attachment stays (see delElements). If a concurrent
// DEL of the same attachment removed one in between, the transaction fails
// and the slow path (dump of sets, by tag) finishes the job.
func delOwned(ks []keyed, sets []*nftables.Set, tg string) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	// One socket for all the look-ups.
	nl, err := dialNetfilter()
	if err != nil {
		return err
	}
	defer nl.Close()
	n := 0
	for _, k := range ks {
		comment, found, err := elementComment(nl, k)
		if err != nil {
			return err
		}
		if !found || comment != tg {
			continue
		}
		if err := c.SetDeleteElements(k.set, []nftables.SetElement{{Key: k.key}}); err != nil {
			return fmt.Errorf("nftables: %s: %w", k.set.Name, err)
		}
		n++
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		if !isNotExist(err) {
			return fmt.Errorf("nftables: deleting %d elements: %w", n, err)
		}
		return delElements(sets, tg)
	}
	return nil
}

// chainUse asks the kernel for one chain (one GET, no dump) and returns its
// use count (NFTA_CHAIN_USE: its rules plus the rules and map elements
// that jump to it); found is false when there is no such chain or table.
//
// A teardown attempt (DELCHAIN refused with EBUSY while the chain is
// referenced) costs no work but waits for the RCU grace period of the
// element deletions before it; looking at the count first lets a DEL skip
// the attempt while other attachments hold the network.
func chainUse(conn *netlink.Conn, t *nftables.Table, chain string) (use uint32, found bool, err error) {
	if conn == nil {
		if conn, err = dialNetfilter(); err != nil {
			return 0, false, err
		}
		defer conn.Close()
	}
	data, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_CHAIN_TABLE, Data: []byte(t.Name + "\x00")},
		{Type: unix.NFTA_CHAIN_NAME, Data: []byte(chain + "\x00")},
	})
	if err != nil {
		return 0, false, err
	}
	hdr := []byte{byte(t.Family), unix.NFNETLINK_V0, 0, 0}
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETCHAIN), Flags: netlink.Request},
		Data:   append(hdr, data...),
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("nftables: get chain %s: %w", chain, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, false, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_CHAIN_USE {
				return ad.Uint32(), true, nil
			}
		}
		return 0, true, nil
	}
	return 0, false, nil
}
