// Package addtx is what every plugin that makes the container's interface
// (bridge, macvlan, vxlan-overlay) does around its own work on ADD: the
// host's and the container's netlink handles, the refusal of an ADD whose
// interface is already there, IPAM reserving in the background, and an
// undo list that runs unless the ADD commits.
//
// The rules it keeps in one place (issue 8's first defect came back in
// macvlan while each plugin had its own copy):
//   - An interface already in the container is a live attachment (a
//     runtime retrying an ADD after a timeout): the ADD fails with code 101
//     before IPAM runs, since IPAM would hand back the attachment's own
//     reservation and the undo would then release it.
//   - A failed ADD releases only a reservation it made itself (IPAM's
//     answer was fresh), and none when a concurrent twin ADD of the same
//     attachment made the interface (MarkLiveTwin): the reservation, keyed
//     by container ID and ifname, is then the twin's too.
//   - Undo steps run in reverse, after IPAM's answer is collected (a
//     reservation made while a step failed is released too), and before
//     the handles close.
package addtx

import (
	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/ipam"
	"github.com/berthnet/berth/pkg/link"
)

// Tx is one ADD. Begin it, defer End, and call Commit once the result is
// recorded.
type Tx struct {
	// Host is the handle in the plugin's (the node's) namespace, Cont
	// the container's namespace.
	Host *netlink.Handle
	Cont *link.NS

	plugin    string
	undo      []func()
	committed bool
	liveTwin  bool
	ipd       ipam.Driver
	ipam      *ipam.Started
	waited    bool
}

// Begin opens the handles and refuses an ADD whose interface exists in the
// container (code 101). On error nothing is left open.
func Begin(plugin string, args *skel.CmdArgs) (*Tx, error) {
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, cni.Errorf(cni.CodeKernel, "%s: netlink: %v", plugin, err)
	}
	cont, err := link.OpenNS(args.Netns)
	if err != nil {
		host.Close()
		return nil, cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS: %v", plugin, err)
	}
	if _, err := cont.Handle.LinkByName(args.IfName); err == nil {
		cont.Close()
		host.Close()
		return nil, Conflict(plugin, args)
	}
	return &Tx{Host: host, Cont: cont, plugin: plugin}, nil
}

// Conflict is the error of an ADD that finds the attachment's interface
// already in the container.
func Conflict(plugin string, args *skel.CmdArgs) error {
	return cni.Errorf(cni.CodeConflict, "%s: interface %s already exists in %s", plugin, args.IfName, args.Netns)
}

// StartIPAM starts d's ADD in the background, to overlap the caller's
// netlink work.
func (t *Tx) StartIPAM(d ipam.Driver) {
	t.ipd, t.ipam = d, d.Start()
}

// WaitIPAM returns IPAM's answer. From then on a failed ADD releases the
// reservation if this ADD made it (and no live twin holds it).
func (t *Tx) WaitIPAM() (*current.Result, error) {
	t.waited = true
	res, err := t.ipam.Wait()
	if err != nil {
		return nil, err
	}
	if t.ipam.Fresh() {
		t.Undo(func() {
			if !t.liveTwin {
				cni.Undone(t.plugin, "releasing addresses", t.ipd.Del())
			}
		})
	}
	return res, nil
}

// MarkLiveTwin records that a concurrent ADD of the same attachment made
// the interface: its reservation is not this ADD's to release.
func (t *Tx) MarkLiveTwin() { t.liveTwin = true }

// Undo registers a step to run if the ADD fails.
func (t *Tx) Undo(f func()) { t.undo = append(t.undo, f) }

// UndoList is the list itself, for helpers that register their own steps.
func (t *Tx) UndoList() *[]func() { return &t.undo }

// Commit turns the undo steps off: the ADD succeeded.
func (t *Tx) Commit() { t.committed = true }

// End runs the undo steps unless the ADD committed, then closes the
// handles. Deferred right after Begin.
func (t *Tx) End() {
	if !t.committed {
		if t.ipam != nil && !t.waited {
			// A step failed while IPAM was running: collect its
			// answer so a reservation it made is released too.
			_, _ = t.WaitIPAM()
		}
		for i := len(t.undo) - 1; i >= 0; i-- {
			t.undo[i]()
		}
	}
	t.Cont.Close()
	t.Host.Close()
}
