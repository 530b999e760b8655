package containermode_test

import (
	"context"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

// TestNoneMode is docker run --network none through
// conf-examples/docker-none.conflist: lo comes up, nothing else exists,
// and a container on the default bridge of the same host is unreachable.
func TestNoneMode(t *testing.T) {
	w := newWorld(t)
	web := w.run("web0123456789", "web")
	none := w.Conflist(nstest.Example(t, "docker-none.conflist"))
	c := nstest.NewNS(t, "none")
	c.MustExec(t, "ip", "link", "set", "lo", "down")
	rc := nstest.Attachment("none0123456789", c, "lo")
	t.Cleanup(func() { _ = w.RT.Del(context.Background(), none, rc) })
	if _, err := w.RT.Add(context.Background(), none, rc); err != nil {
		t.Fatal(err)
	}
	links := strings.Split(strings.TrimSpace(c.MustExec(t, "ip", "-br", "link")), "\n")
	if len(links) != 1 || !strings.HasPrefix(links[0], "lo ") || !strings.Contains(links[0], "UP") {
		t.Fatalf("links: got %q, want only lo, up", links)
	}
	if out := c.MustExec(t, "ip", "-br", "-4", "addr"); !strings.Contains(out, "127.0.0.1/8") {
		t.Fatalf("lo has no 127.0.0.1: %q", out)
	}
	if out := c.MustExec(t, "ip", "route"); strings.TrimSpace(out) != "" {
		t.Fatalf("routes in a none container: %q", out)
	}
	nstest.Ping(t, c, "127.0.0.1")
	nstest.NoPing(t, c, web.IP(t, "4"))
	if err := w.RT.Del(context.Background(), none, rc); err != nil {
		t.Fatal(err)
	}
}
