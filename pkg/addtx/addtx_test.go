package addtx_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/addtx"
	"github.com/berthnet/berth/pkg/cni"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// TestBegin: an interface already in the container is a live attachment,
// refused with code 101 before anything else; a bad netns is code 3.
func TestBegin(t *testing.T) {
	host, ctr := nstest.NewNS(t, "host"), nstest.NewNS(t, "ctr")
	nstest.Veth(t, host, "h0", "", ctr, "eth0", "")
	for _, tt := range []struct {
		name string
		args *skel.CmdArgs
		code uint // 0: no error
	}{
		{"free name", &skel.CmdArgs{ContainerID: "c1", Netns: ctr.Path, IfName: "eth1"}, 0},
		{"interface exists", &skel.CmdArgs{ContainerID: "c1", Netns: ctr.Path, IfName: "eth0"}, cni.CodeConflict},
		{"no such netns", &skel.CmdArgs{ContainerID: "c1", Netns: "/run/netns/" + nstest.UniqueName("none"), IfName: "eth0"}, types.ErrInvalidNetNS},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := addtx.Begin("test", tt.args)
			if tt.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tx.End()
				return
			}
			var ce *types.Error
			if !errors.As(err, &ce) || ce.Code != tt.code {
				t.Fatalf("Begin: %v, want code %d", err, tt.code)
			}
		})
	}
}

// TestEnd: the undo steps run in reverse unless the ADD committed.
func TestEnd(t *testing.T) {
	ctr := nstest.NewNS(t, "ctr")
	for _, commit := range []bool{false, true} {
		tx, err := addtx.Begin("test", &skel.CmdArgs{ContainerID: "c1", Netns: ctr.Path, IfName: "eth0"})
		if err != nil {
			t.Fatal(err)
		}
		var ran []int
		tx.Undo(func() { ran = append(ran, 1) })
		*tx.UndoList() = append(*tx.UndoList(), func() { ran = append(ran, 2) })
		tx.Undo(func() { ran = append(ran, 3) })
		if commit {
			tx.Commit()
		}
		tx.End()
		want := []int{3, 2, 1}
		if commit {
			want = nil
		}
		if !slices.Equal(ran, want) {
			t.Errorf("commit=%v: undo ran %v, want %v", commit, ran, want)
		}
	}
}
