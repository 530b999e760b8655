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
	if len(leftovers) != 0 {
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
	stale := filepath.Join(dir, "net1", ".tmp-123")
	if err := os.WriteFile(stale, []byte(`{"containerID":"victim"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "net1", "c1", "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "net1")); !os.IsNotExist(err) {
		t.Fatalf("network directory after its last entry's DEL: got %v, want it gone with the stale temporary file", err)
	}
}
