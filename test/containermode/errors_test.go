package containermode_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/registry"
)

// TestBadInput: every refused join has the right code, a message naming
// what is wrong, and changes nothing: the joiner's path still refers to
// its own namespace and no join is recorded.
func TestBadInput(t *testing.T) {
	w := newWorld(t)
	web := w.run("abc1110000000000", "web")
	w.run("abc2220000000000", "db")
	withField := func(path []string, v any) *libcni.NetworkConfigList {
		return w.Conflist(nstest.Example(t, "docker-container-mode.conflist"), func(m map[string]any) {
			p := m["plugins"].([]any)[0].(map[string]any)
			for _, k := range path[:len(path)-1] {
				next := map[string]any{}
				p[k] = next
				p = next
			}
			p[path[len(path)-1]] = v
		})
	}
	// container-mode after a plugin that made interfaces in CNI_NETNS.
	chained := w.Conflist([]byte(`{"cniVersion":"1.1.0","name":"chained","plugins":[
		{"type":"bridge","bridge":"chained0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.66.0.0/24"}]]}},
		{"type":"container-mode"}]}`))
	cases := []struct {
		name    string
		list    *libcni.NetworkConfigList
		id      string
		netns   string // default: a fresh namespace
		opt     func(*libcni.RuntimeConf)
		code    uint
		msgHave []string
	}{
		{"unknown name", w.join, "j1", "", joining("nosuch"), 3, []string{`"nosuch"`}},
		{"ambiguous prefix", w.join, "j1", "", joining("abc"), 7, []string{"abc1110000000000 (web)", "abc2220000000000 (db)"}},
		{"no CONTAINER", w.join, "j1", "", func(*libcni.RuntimeConf) {}, 7, []string{"CONTAINER="}},
		{"runtimeConfig.container not a string", withField([]string{"runtimeConfig", "container"}, 5), "j1", "", func(*libcni.RuntimeConf) {}, 6, []string{"runtimeConfig.container"}},
		{"args.cni.container not a string", withField([]string{"args", "cni", "container"}, true), "j1", "", func(*libcni.RuntimeConf) {}, 6, []string{"args.cni.container"}},
		{"attachmentsDir relative", withField([]string{"attachmentsDir"}, "rel/dir"), "j1", "", joining("web"), 7, []string{"attachmentsDir", "rel/dir"}},
		{"joining itself", w.join, web.ID, web.NS.Path, joining("web"), 7, []string{"itself"}},
		{"a process's namespace", w.join, "j1", "proc", joining("web"), 8, []string{"/proc/"}},
		{"not the first plugin", chained, "j1", "", joining("web"), 7, []string{"first plugin"}},
		{"not a namespace", w.join, "j1", "regular", joining("web"), 8, []string{"not a namespace"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.netns
			switch path {
			case "":
				path = nstest.NewNS(t, "j").Path
			case "proc":
				// A process in a namespace of this test: its
				// /proc/PID/ns/net is what a runtime might pass.
				p := nstest.NewNS(t, "p").Start(t, "sleep", "60").Process.Pid
				path = fmt.Sprintf("/proc/%d/ns/net", p)
			case "regular":
				path = filepath.Join(t.TempDir(), "netns")
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var before uint64
			if !strings.HasPrefix(path, "/proc") {
				before = nsIno(t, path)
			}
			rc := &libcni.RuntimeConf{ContainerID: tt.id, NetNS: path, IfName: "eth0"}
			tt.opt(rc)
			e := w.addErr(tt.list, rc)
			if e.Code != tt.code {
				t.Errorf("code: got %d (%s), want %d", e.Code, e.Msg, tt.code)
			}
			for _, s := range tt.msgHave {
				if !strings.Contains(e.Msg, s) {
					t.Errorf("message %q does not mention %q", e.Msg, s)
				}
			}
			if before != 0 && nsIno(t, path) != before {
				t.Error("the refused ADD changed what CNI_NETNS refers to")
			}
			if got := w.joins(); len(got) != 0 {
				t.Errorf("joins recorded by a refused ADD: %v", got)
			}
		})
	}
}

// TestUnknownWithoutRegistry: no container attached yet on this host: code
// 3, and the registry directory is not created by the refusal.
func TestUnknownWithoutRegistry(t *testing.T) {
	w := newWorld(t)
	c := nstest.NewNS(t, "j")
	rc := nstest.Attachment("j1", c, "eth0")
	joining("web")(rc)
	if e := w.addErr(w.join, rc); e.Code != 3 || !strings.Contains(e.Msg, `"web"`) {
		t.Fatalf("got %d %q, want code 3 naming web", e.Code, e.Msg)
	}
	if _, err := os.Stat(filepath.Join(w.DataDir, "attachments")); !os.IsNotExist(err) {
		t.Fatalf("attachments dir after a refused join: %v", err)
	}
	if err := w.RT.Del(context.Background(), w.join, rc); err != nil {
		t.Fatalf("DEL without ADD: %v", err)
	}
}

// TestJoinTwice: a second ADD of the same attachment is code 101 and
// leaves the first join as it was.
func TestJoinTwice(t *testing.T) {
	w := newWorld(t)
	web := w.run("twice0123456789", "web")
	j := w.joinOf("j0123456789", "j", "web")
	if e := w.addErr(w.join, j.RC); e.Code != 101 {
		t.Fatalf("second ADD: got %d %q, want 101", e.Code, e.Msg)
	}
	// addErr ran a DEL after the failed ADD, as runtimes do: the join is gone.
	if nsIno(t, j.NS.Path) == nsIno(t, web.NS.Path) {
		t.Fatal("DEL after the refused ADD left the join")
	}
}

// TestBridgeRecords: the bridge records each attachment in the shared
// registry (0600 files in 0700 directories) with what container-mode
// needs, forgets it on DEL, and a failed ADD leaves no entry behind.
func TestBridgeRecords(t *testing.T) {
	w := newWorld(t)
	web := w.run("rec0123456789abcdef", "web")
	root := filepath.Join(w.DataDir, "attachments")
	file := filepath.Join(root, w.bridge.Name, web.ID+"@eth0.json")
	for p, want := range map[string]os.FileMode{root: 0o700, filepath.Dir(file): 0o700, file: 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: got %v %v, want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var e registry.Entry
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.Names, []string{"web", "rec012345678"}) || e.Netns != web.NS.Path || e.MAC != sandboxMAC(t, web.Res) ||
		e.HostIf != link.HostVethName(web.ID, "eth0") || len(e.IPs) != 1 || e.IPs[0].String() != web.Res.IPs[0].Address.String() || len(e.Routes) == 0 {
		t.Fatalf("entry: got %s", b)
	}
	if err := w.RT.Del(context.Background(), w.bridge, web.RC); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("entry after DEL: %v", err)
	}

	// A registry that cannot be written fails the ADD, which undoes all.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := w.Conflist(nstest.Example(t, "docker-default.conflist"), nstest.SetField(0, "attachmentsDir", filepath.Join(blocker, "sub")))
	c := nstest.NewNS(t, "c")
	rc := nstest.Attachment("fail0123456789", c, "eth0")
	if e := w.addErr(bad, rc); e.Code != 5 {
		t.Fatalf("ADD with an unwritable registry: got %d %q, want 5", e.Code, e.Msg)
	}
	if out := w.Host.MustExec(t, "ip", "-o", "link", "show"); strings.Contains(out, link.HostVethName(rc.ContainerID, "eth0")) {
		t.Fatalf("the failed ADD left its veth: %s", out)
	}
	if out := c.MustExec(t, "ip", "-o", "link", "show"); strings.Contains(out, "eth0") {
		t.Fatalf("the failed ADD left eth0: %s", out)
	}
	res, _ := os.ReadDir(filepath.Join(w.DataDir, "networks", w.bridge.Name))
	for _, r := range res {
		if strings.HasPrefix(r.Name(), "172.") {
			t.Fatalf("the failed ADD left a reservation: %s", r.Name())
		}
	}
}

// TestBridgeRelativeAttachmentsDir: the bridge refuses a relative
// attachmentsDir at ADD (code 7, naming it, nothing left), and its DEL
// with that config succeeds, as DEL must for any config ADD refused.
func TestBridgeRelativeAttachmentsDir(t *testing.T) {
	w := newWorld(t)
	bad := w.Conflist(nstest.Example(t, "docker-default.conflist"), nstest.SetField(0, "attachmentsDir", "rel/dir"))
	c := nstest.NewNS(t, "c")
	rc := nstest.Attachment("reldir0123456789", c, "eth0")
	e := w.addErr(bad, rc)
	if e.Code != 7 || !strings.Contains(e.Msg, "attachmentsDir") || !strings.Contains(e.Msg, "rel/dir") {
		t.Fatalf("got %d %q, want 7 naming attachmentsDir", e.Code, e.Msg)
	}
	if out := w.Host.MustExec(t, "ip", "-o", "link", "show"); strings.Contains(out, link.HostVethName(rc.ContainerID, "eth0")) {
		t.Fatalf("the refused ADD left its veth: %s", out)
	}
}
