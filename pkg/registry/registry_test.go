package registry_test

import (
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
