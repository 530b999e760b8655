package retry_test

import (
	"context"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/link"
)

// The host veth name derives from the attachment (32 bits of a hash), so a
// link of someone else's can hold it. ADD must neither delete nor take it:
// it picks the next candidate name, and DEL finds that one by its owner
// mark and leaves the foreign link alone.
func TestForeignLinkWithDerivedVethName(t *testing.T) {
	e := nstest.NewEnv(t)
	list := e.Conflist(nstest.Example(t, "docker-default.conflist"))
	const id = "ctr-collide"
	derived := link.HostVethName(id, "eth0")
	peer := nstest.UniqueName("f")
	e.Host.MustExec(t, "ip", "link", "add", derived, "type", "veth", "peer", "name", peer)
	e.Host.MustExec(t, "ip", "link", "set", derived, "alias", "someone else's")

	c := e.Run(list, id)
	if got := c.Res.Interfaces[1].Name; got == derived {
		t.Fatalf("ADD took the foreign link's name %s", got)
	}
	if !strings.Contains(links(t, e.Host), derived+"@"+peer) {
		t.Fatalf("ADD removed the foreign link %s:\n%s", derived, links(t, e.Host))
	}
	nstest.Ping(t, e.Host, c.IP(t, "4"))
	if err := e.RT.Check(context.Background(), list, c.RC); err != nil {
		t.Fatalf("CHECK: %v", err)
	}

	// DEL without the container's namespace (the runtime lost it) must
	// still find the attachment's veth by its candidates and owner mark.
	ours := c.Res.Interfaces[1].Name
	// The container end moves to another namespace of the test's, so the
	// pair outlives the DEL's view of the container.
	limbo := nstest.NewNS(t, "limbo")
	c.NS.MustExec(t, "ip", "link", "set", "eth0", "netns", limbo.Name)
	rc := *c.RC
	rc.NetNS = ""
	if err := e.RT.Del(context.Background(), list, &rc); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	hl := links(t, e.Host)
	if strings.Contains(hl, ours+"@") {
		t.Fatalf("DEL left the attachment's veth %s:\n%s", ours, hl)
	}
	if !strings.Contains(hl, derived+"@"+peer) {
		t.Fatalf("DEL removed the foreign link %s:\n%s", derived, hl)
	}
}

// links lists the link names in ns.
func links(t testing.TB, ns *nstest.NS) string {
	t.Helper()
	return ns.MustExec(t, "ip", "-o", "link", "show")
}

// A leftover host veth of the same attachment (its ADD's DEL never came,
// and its container end lives on elsewhere) carries the attachment's mark:
// ADD replaces it and keeps the derived name.
func TestLeftoverOwnVethReplaced(t *testing.T) {
	e := nstest.NewEnv(t)
	list := e.Conflist(nstest.Example(t, "docker-default.conflist"))
	const id = "ctr-leftover"
	derived := link.HostVethName(id, "eth0")
	e.Host.MustExec(t, "ip", "link", "add", derived, "type", "veth", "peer", "name", nstest.UniqueName("l"))
	e.Host.MustExec(t, "ip", "link", "set", derived, "alias", link.VethAlias(id, "eth0"))

	c := e.Run(list, id)
	if got := c.Res.Interfaces[1].Name; got != derived {
		t.Fatalf("host veth %s, want the derived name %s (the leftover replaced)", got, derived)
	}
	nstest.Ping(t, e.Host, c.IP(t, "4"))
}
