package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/registry"
)

// bridgeResult is what a bridge ADD returns: bridge, host veth, container
// interface with one address.
func bridgeResult(ip string) *current.Result {
	idx := 2
	return &current.Result{
		Interfaces: []*current.Interface{{Name: "docker0"}, {Name: "veth1234"}, {Name: "eth0", Mac: "02:42:ac:11:00:02", Sandbox: "/run/netns/x"}},
		IPs:        []*current.IPConfig{{Interface: &idx, Address: net.IPNet{IP: net.ParseIP(ip), Mask: net.CIDRMask(16, 32)}, Gateway: net.ParseIP("172.17.0.1")}},
	}
}

func record(t *testing.T, dir, network, id, name string) {
	t.Helper()
	args := &skel.CmdArgs{ContainerID: id, IfName: "eth0", Netns: "/run/netns/" + id, Args: "IgnoreUnknown=1;K8S_POD_NAME=" + name}
	if err := registry.RecordAttachment(dir, network, args, bridgeResult("172.17.0.2")); err != nil {
		t.Fatal(err)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	record(t, dir, "bridge", "abc111aaaa", "web")
	record(t, dir, "bridge", "abc222bbbb", "db")
	record(t, dir, "other", "abc111aaaa", "web")
	record(t, dir, "bridge", "web", "cache") // an ID that is another's name
	f, err := registry.OpenAttachments(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref     string
		wantID  string
		entries int
		amb     []string
	}{
		{ref: "abc111aaaa", wantID: "abc111aaaa", entries: 2},
		{ref: "db", wantID: "abc222bbbb", entries: 1},
		{ref: "web", wantID: "web", entries: 1}, // exact ID before name, as Docker
		{ref: "abc2", wantID: "abc222bbbb", entries: 1},
		{ref: "abc", amb: []string{"abc111aaaa (web)", "abc222bbbb (db)"}},
		{ref: "nosuch"},
		{ref: ""},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := f.Find(context.Background(), tt.ref)
			var amb *registry.AmbiguousError
			switch {
			case tt.amb != nil:
				if !errors.As(err, &amb) || !slices.Equal(amb.Candidates, tt.amb) {
					t.Fatalf("got %v, want ambiguous %v", err, tt.amb)
				}
			case tt.wantID == "":
				if !errors.Is(err, registry.ErrNotFound) {
					t.Fatalf("got %v %v, want ErrNotFound", got, err)
				}
			default:
				if err != nil || len(got) != tt.entries || got[0].ContainerID != tt.wantID {
					t.Fatalf("got %d entries (%v), want %d of %s", len(got), err, tt.entries, tt.wantID)
				}
			}
		})
	}
}

// TestNameIndex: links follow their entries, a stale link (left by a
// crash) never resolves, and GC sweeps it.
func TestNameIndex(t *testing.T) {
	dir := t.TempDir()
	record(t, dir, "bridge", "abc111aaaa", "web")
	links := func() []string {
		des, _ := os.ReadDir(filepath.Join(dir, "@names"))
		var out []string
		for _, d := range des {
			out = append(out, d.Name())
		}
		return out
	}
	// The short ID (here the whole ID) needs no link: Find tries prefixes.
	want := []string{"web@abc111aaaa@bridge@eth0"}
	if got := links(); !slices.Equal(got, want) {
		t.Fatalf("links: got %v, want %v", got, want)
	}
	// A crash left a link to an entry that is not there, and a link to a
	// live container under a name it does not have.
	for _, l := range []string{"db@ghost0000@bridge@eth0", "db@abc111aaaa@other@eth0"} {
		if err := os.Symlink("../bridge/x.json", filepath.Join(dir, "@names", l)); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := registry.OpenAttachments(dir)
	if got, err := a.Find(context.Background(), "db"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Find(db) through stale links: got %v, %v; want ErrNotFound", got, err)
	}
	if err := registry.GCAttachments(dir, "bridge", map[cni.Attachment]bool{{ContainerID: "abc111aaaa", IfName: "eth0"}: true}); err != nil {
		t.Fatal(err)
	}
	if got := links(); !slices.Equal(got, want) {
		t.Fatalf("links after GC: got %v, want %v", got, want)
	}
	if err := registry.ForgetAttachment(dir, "bridge", &skel.CmdArgs{ContainerID: "abc111aaaa", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	if got := links(); len(got) != 0 {
		t.Fatalf("links after ForgetAttachment: %v", got)
	}
}

func TestAttachmentEntry(t *testing.T) {
	args := &skel.CmdArgs{ContainerID: "0123456789abcdef", IfName: "eth0", Netns: "/run/netns/c", Args: "K8S_POD_NAME=web"}
	e := registry.AttachmentEntry("bridge", args, bridgeResult("172.17.0.5"))
	if !slices.Equal(e.Names, []string{"web", "0123456789ab"}) || e.HostIf != "veth1234" || e.MAC != "02:42:ac:11:00:02" ||
		len(e.IPs) != 1 || e.IPs[0].String() != "172.17.0.5/16" || len(e.Gateways) != 1 || e.Netns != "/run/netns/c" {
		t.Fatalf("got %+v", e)
	}
	// An invalid name is left out rather than failing the ADD.
	args.Args = "K8S_POD_NAME=-bad-"
	if e := registry.AttachmentEntry("bridge", args, bridgeResult("172.17.0.5")); !slices.Equal(e.Names, []string{"0123456789ab"}) {
		t.Fatalf("names with an invalid K8S_POD_NAME: got %v", e.Names)
	}
}

func TestForgetAndGC(t *testing.T) {
	// Nothing recorded: no error, and the directory is not created.
	missing := filepath.Join(t.TempDir(), "none")
	args := &skel.CmdArgs{ContainerID: "abc", IfName: "eth0"}
	if err := registry.ForgetAttachment(missing, "bridge", args); err != nil {
		t.Fatal(err)
	}
	if err := registry.GCAttachments(missing, "bridge", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("ForgetAttachment created %s: %v", missing, err)
	}
	// A relative dir: RecordAttachment refuses it, so DEL has nothing to do.
	if err := registry.RecordAttachment("relative", "bridge", args, bridgeResult("172.17.0.2")); err == nil {
		t.Fatal("a relative attachmentsDir was accepted")
	}
	if err := registry.ForgetAttachment("relative", "bridge", args); err != nil {
		t.Fatalf("ForgetAttachment with a dir ADD refuses: %v", err)
	}

	dir := t.TempDir()
	record(t, dir, "bridge", "keep", "a")
	record(t, dir, "bridge", "drop", "b")
	record(t, dir, "other", "drop", "b")
	if err := registry.GCAttachments(dir, "bridge", map[cni.Attachment]bool{{ContainerID: "keep", IfName: "eth0"}: true}); err != nil {
		t.Fatal(err)
	}
	f, _ := registry.OpenFiles(dir)
	for _, c := range []struct {
		network, id string
		want        bool
	}{{"bridge", "keep", true}, {"bridge", "drop", false}, {"other", "drop", true}} {
		_, err := f.Get(context.Background(), c.network, c.id, "eth0")
		if got := err == nil; got != c.want {
			t.Fatalf("%s/%s after GC: present %v, want %v", c.network, c.id, got, c.want)
		}
	}
	if err := registry.ForgetAttachment(dir, "bridge", &skel.CmdArgs{ContainerID: "keep", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get(context.Background(), "bridge", "keep", "eth0"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after ForgetAttachment: %v", err)
	}
}

// BenchmarkRecordAttachment is the registry's share of an attaching
// plugin's ADD: one entry written atomically under the network's lock.
func BenchmarkRecordAttachment(b *testing.B) {
	dir := b.TempDir()
	res := bridgeResult("172.17.0.2")
	args := &skel.CmdArgs{IfName: "eth0", Netns: "/run/netns/x", Args: "K8S_POD_NAME=web"}
	for i := 0; b.Loop(); i++ {
		args.ContainerID = fmt.Sprintf("c%d", i)
		if err := registry.RecordAttachment(dir, "bridge", args, res); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFind resolves a reference among 1000 attachments: by ID prefix
// (directory listings only) and by name (one entry read per container).
func BenchmarkFind(b *testing.B) {
	dir := b.TempDir()
	res := bridgeResult("172.17.0.2")
	for i := range 1000 {
		args := &skel.CmdArgs{ContainerID: fmt.Sprintf("%08x", i), IfName: "eth0", Netns: "/run/netns/x", Args: fmt.Sprintf("K8S_POD_NAME=c%d", i)}
		if err := registry.RecordAttachment(dir, "bridge", args, res); err != nil {
			b.Fatal(err)
		}
	}
	f, _ := registry.OpenAttachments(dir)
	for _, ref := range []string{"000003e7", "c999"} {
		b.Run(ref, func(b *testing.B) {
			for b.Loop() {
				if _, err := f.Find(context.Background(), ref); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
