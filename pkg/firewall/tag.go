package firewall

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/berthnet/berth/pkg/cni"
)

// A tag names the attachment that owns a set element or rule:
// "<network>/<containerID>/<ifname>". It is stored in the element's comment
// (nftables userdata) or the rule's comment (iptables), which is how DEL
// without IPs, CHECK and GC find an attachment's entries. None of the three
// parts can contain '/' (CNI names and container IDs are validated with
// cni.SafeName/SafeContainerID; the kernel refuses '/' in interface names),
// so the tag splits unambiguously.
//
// Comments are limited to 256 bytes in both backends; a part that would
// overflow is replaced by a hash, which still compares equal for the same
// input, so matching keeps working.
const maxTagPart = 80

func tag(network, containerID, ifName string) string {
	return shorten(network) + "/" + shorten(containerID) + "/" + shorten(ifName)
}

func shorten(s string) string {
	if len(s) <= maxTagPart {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "h-" + hex.EncodeToString(sum[:16])
}

// tagNetwork returns the network part of a tag, "" when t is not one of ours.
func tagNetwork(t string) string {
	parts := strings.Split(t, "/")
	if len(parts) != 3 {
		return ""
	}
	return parts[0]
}

// sameContainer reports whether two tags name attachments of one
// container (the same container ID, on any network or interface): Podman
// hands a container's port mappings to every network it joins.
func sameContainer(a, b string) bool {
	pa, pb := strings.Split(a, "/"), strings.Split(b, "/")
	return len(pa) == 3 && len(pb) == 3 && pa[1] == pb[1]
}

// validTags turns GC's valid set into the set of tags of one network.
func validTags(network string, valid map[cni.Attachment]bool) map[string]bool {
	out := make(map[string]bool, len(valid))
	for a := range valid {
		out[tag(network, a.ContainerID, a.IfName)] = true
	}
	return out
}

// ownerOf is a tag for messages: "container ID (ifname on network NAME)".
func ownerOf(t string) string {
	parts := strings.Split(t, "/")
	if len(parts) != 3 {
		return t
	}
	return fmt.Sprintf("container %s (%s on network %s)", parts[1], parts[2], parts[0])
}
