package portmap_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/cni"
)

// portmap alone (no plugin before it): ADD needs a prevResult, DEL works
// without ADD, without netns, twice, and creates nothing.
func TestPortmapAlone(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t)
			raw := `{"cniVersion":"1.1.0","name":"alone","plugins":[{"type":"portmap","backend":"` + backend + `","capabilities":{"portMappings":true}}]}`
			list, err := libcni.ConfListFromBytes([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			c := e.newContainer(t, "lonely", mapping{8080, 80, "tcp", ""})
			_, err = e.RT.Add(context.Background(), list, c.rc)
			var ce *types.Error
			if !errors.As(err, &ce) || ce.Code != cni.CodeInvalidConfig || !strings.Contains(ce.Msg, "prevResult") {
				t.Fatalf("ADD without prevResult: got %v, want code 7 naming prevResult", err)
			}
			noNS := nstest.Attachment("never-added", c.ns, "eth0")
			noNS.NetNS = ""
			for i := 0; i < 2; i++ {
				if err := e.RT.Del(context.Background(), list, noNS); err != nil {
					t.Fatalf("DEL #%d without ADD or netns: %v", i, err)
				}
			}
			if backend == "nftables" {
				if rs := e.Host.MustExec(t, "nft", "list", "ruleset"); strings.TrimSpace(rs) != "" {
					t.Errorf("ruleset after DEL without ADD: got %q, want empty", rs)
				}
			}
		})
	}
}

// A bad mapping is a code-7 error naming the field, and the failed ADD
// leaves no mapping behind.
func TestBadMapping(t *testing.T) {
	e := newEnv(t)
	list := e.list(t, "nftables")
	c := e.newContainer(t, "bad", mapping{8080, 80, "tcp", ""}, mapping{8081, 80, "icmp", ""})
	err := e.add(t, list, c)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != cni.CodeInvalidConfig || !strings.Contains(ce.Msg, `protocol "icmp"`) {
		t.Fatalf("ADD with protocol icmp: got %v, want code 7 naming it", err)
	}
	_ = e.RT.Del(context.Background(), list, c.rc)
	if out, _ := e.Host.Exec("nft", "list", "map", "inet", "berth", "ports4"); strings.Contains(out, "8080") {
		t.Errorf("mapping left after failed ADD:\n%s", out)
	}
}
