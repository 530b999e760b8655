package firewall

// Isolation between VXLAN overlays (vxlan-overlay): a host on two
// overlays would otherwise route between them, as it routes between any
// two of its interfaces. Each overlay's rules drop what crosses from its
// bridge or VXLAN device to another overlay's bridge or VXLAN device.

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// overlayForward is the base chain (inet berth, hook forward) holding
// every overlay's isolation rules.
const overlayForward = "overlay-forward"

// OverlayNames are the names of one overlay's devices on this host and
// the prefixes every overlay's devices share.
type OverlayNames struct {
	Bridge, Device             string
	BridgePrefix, DevicePrefix string
}

func (o OverlayNames) tag() []byte { return []byte("overlay:" + o.Device) }

// ifname is an interface name as the kernel's meta ifname has it:
// NUL-padded to IFNAMSIZ, for an exact compare.
func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

// IsolateOverlay installs o's rules unless they are there (one rule set
// per overlay, found by its tag; never removed: like the bridge and the
// VXLAN device, they are the host's for the overlay, not a container's).
//
// Same as, in table inet berth, chain overlay-forward (hook forward):
//
//	iifname BR oifname "PFXBR*" oifname != BR drop
//	iifname BR oifname "PFXVX*" oifname != VX drop
//	iifname VX oifname "PFXBR*" oifname != BR drop
func IsolateOverlay(o OverlayNames) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	t := c.AddTable(nftTable())
	ch := c.AddChain(&nftables.Chain{Name: overlayForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: chain %s: %w", overlayForward, err)
	}
	rules, err := c.GetRules(t, ch)
	if err != nil {
		return fmt.Errorf("nftables: rules of %s: %w", overlayForward, err)
	}
	for _, r := range rules {
		if string(r.UserData) == string(o.tag()) {
			return nil
		}
	}
	rule := func(in, outPrefix, outSelf string) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, UserData: o.tag(), Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(in)},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(outPrefix)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(outSelf)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	rule(o.Bridge, o.BridgePrefix, o.Bridge)
	rule(o.Bridge, o.DevicePrefix, o.Device)
	rule(o.Device, o.BridgePrefix, o.Bridge)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: overlay isolation of %s: %w", o.Device, err)
	}
	return nil
}
