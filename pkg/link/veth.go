package link

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// vethCandidates is how many names an attachment's host veth may take. The
// first is HostVethName; the others exist for the rare link of someone
// else's that holds a derived name (32 bits of a hash collide).
const vethCandidates = 8

// HostVethName derives the host-side veth name from the attachment, so DEL
// can find it even when the container's namespace is already gone, and so
// two attachments never race for one random name. "veth" + 8 hex digits,
// the shape of the reference plugin's random names.
func HostVethName(containerID, ifName string) string {
	return hostVethName(containerID + "/" + ifName)
}

func hostVethName(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "veth" + hex.EncodeToString(sum[:4])
}

// HostVethCandidates are the names, in order, that the attachment's host
// veth may have: HostVethName, then rehashes with a counter. Deterministic,
// so DEL tries the same ones ADD did.
func HostVethCandidates(containerID, ifName string) []string {
	out := []string{HostVethName(containerID, ifName)}
	for i := 1; i < vethCandidates; i++ {
		out = append(out, hostVethName(containerID+"/"+ifName+"/"+strconv.Itoa(i)))
	}
	return out
}

// VethAlias is the owner mark berth puts on a host veth (its IFLA_IFALIAS,
// `ip link show` prints it): "berth:<containerID>/<ifname>", a hash when
// that would not fit the kernel's 255 bytes.
func VethAlias(containerID, ifName string) string {
	a := "berth:" + containerID + "/" + ifName
	if len(a) <= 255 {
		return a
	}
	sum := sha256.Sum256([]byte(a))
	return "berth:h-" + hex.EncodeToString(sum[:16])
}

// ErrIfaceExists is returned by AddOwnedVeth when the container already has
// the interface (a concurrent ADD of the same attachment made it).
var ErrIfaceExists = errors.New("interface already exists in the container")

// AddOwnedVeth creates the attachment's veth pair (v without HostName),
// its host end marked with VethAlias, under the first candidate name that
// is free. A candidate held by a link carrying the same mark is a leftover
// of this attachment (an ADD whose DEL never came) unless the container has
// its end (then it is live: ErrIfaceExists): a leftover is deleted and the
// name reused. A candidate held by anything else is never touched.
//
// Same as: ip link add NAME … alias berth:ID/IF type veth peer name PEER netns NS
func AddOwnedVeth(h *netlink.Handle, v Veth, containerID, ifName string) (netlink.Link, error) {
	alias := VethAlias(containerID, ifName)
	v.Alias = alias
	for _, name := range HostVethCandidates(containerID, ifName) {
		v.HostName = name
		l, err := AddVeth(h, v)
		if !errors.Is(err, unix.EEXIST) {
			return l, err
		}
		held, lerr := h.LinkByName(name)
		if IsNotFound(lerr) {
			// The host name is free: the peer's name is what exists.
			return nil, fmt.Errorf("create veth %s (peer %s): %w", name, v.PeerName, ErrIfaceExists)
		}
		if lerr != nil {
			return nil, fmt.Errorf("look up %s: %w", name, lerr)
		}
		if held.Attrs().Alias != alias {
			continue // someone else's: try the next name
		}
		// Ours. A pair is created whole, so if the container already has
		// its end, this is a live attachment (a concurrent ADD of the same
		// attachment made it), not a leftover.
		if v.PeerNS != nil {
			if _, err := v.PeerNS.Handle.LinkByName(v.PeerName); err == nil {
				return nil, fmt.Errorf("create veth %s (peer %s): %w", name, v.PeerName, ErrIfaceExists)
			}
		}
		if err := h.LinkDel(held); err != nil && !IsNotFound(err) {
			return nil, fmt.Errorf("delete leftover veth %s: %w", name, err)
		}
		l, err = AddVeth(h, v)
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create veth %s (peer %s): %w", name, v.PeerName, ErrIfaceExists)
		}
		return l, err
	}
	return nil, fmt.Errorf("create veth for %s/%s: all %d candidate names are held by other links", containerID, ifName, vethCandidates)
}

// DelVethPair removes an attachment's veth pair: the container end, named
// ifName in cont (nil when the container's namespace is gone or unknown),
// and the host end. Deleting a veth deletes its peer in the same request,
// so when the container end was a veth the host end is gone with it and
// the candidate names are not looked at (a DEL's critical path is this
// deletion; eight look-ups cost another half millisecond). Otherwise the
// host end is found by its candidate names and owner mark (DelOwnedVeth).
func DelVethPair(host, cont *netlink.Handle, containerID, ifName string) error {
	if cont != nil {
		l, err := cont.LinkByName(ifName)
		switch {
		case IsNotFound(err):
		case err != nil:
			return fmt.Errorf("look up %s: %w", ifName, err)
		default:
			if err := cont.LinkDel(l); err != nil && !IsNotFound(err) {
				return fmt.Errorf("delete %s: %w", ifName, err)
			}
			if l.Type() == "veth" {
				return nil
			}
		}
	}
	return DelOwnedVeth(host, containerID, ifName)
}

// DelOwnedVeth deletes the attachment's host veth: the candidate name that
// carries its mark. Links of others under a candidate name stay; nothing
// found is not an error.
func DelOwnedVeth(h *netlink.Handle, containerID, ifName string) error {
	alias := VethAlias(containerID, ifName)
	for _, name := range HostVethCandidates(containerID, ifName) {
		l, err := h.LinkByName(name)
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("look up %s: %w", name, err)
		}
		if l.Attrs().Alias != alias {
			continue
		}
		if err := h.LinkDel(l); err != nil && !IsNotFound(err) {
			return fmt.Errorf("delete %s: %w", name, err)
		}
	}
	return nil
}
