package registry_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/registrytest"
)

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := registry.OpenFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	registrytest.Store(t, s)
	fi, err := os.Stat(filepath.Join(dir, "net1"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("net1 dir: got %v %v, want 0700", fi.Mode().Perm(), err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "*", ".tmp-*"))
	writing, _ := filepath.Glob(filepath.Join(dir, "~tmp", "*", ".tmp-*"))
	if leftovers = append(leftovers, writing...); len(leftovers) != 0 {
		t.Fatalf("temp files left: %v", leftovers)
	}
}

// TestFilesKilledWriterSwept: a plugin killed between writing an entry's
// temporary file and renaming it (test/crash found one naming the killed
// container) leaves nothing once the network's entries are written or
// deleted again, and the network's directory still goes with its last
// entry.
func TestFilesKilledWriterSwept(t *testing.T) {
	dir := t.TempDir()
	s, err := registry.OpenFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := &registry.Entry{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	if err := s.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	// Entries are written through a temporary file in ~tmp/<network>,
	// so that the sweep does not read every entry of the network.
	stale := filepath.Join(dir, "~tmp", "net1", ".tmp-c1@eth0.json-123")
	if err := os.WriteFile(stale, []byte(`{"containerID":"victim"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "net1", "c1", "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(dir, "net1"), filepath.Join(dir, "~tmp", "net1")} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("%s after the network's last entry's DEL: got %v, want it gone with the stale temporary file", d, err)
		}
	}
	// Swept by a Put too; and never listed as a network.
	if err := os.MkdirAll(filepath.Dir(stale), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file after a Put: %v, want it swept", err)
	}
	if nets, err := s.Networks(ctx); err != nil || len(nets) != 1 || nets[0] != "net1" {
		t.Errorf("networks: %v, %v; want [net1]", nets, err)
	}
}
