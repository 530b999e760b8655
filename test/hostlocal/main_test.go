// Package hostlocal tests the host-local binary as runtimes use it: through
// libcni, with every plugin process started in a private "host" namespace,
// and side by side with the reference host-local v1.9.1 on one store.
package hostlocal

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// buildReference builds containernetworking/plugins v1.9.1's host-local
// into <tempdir>/host-local in a scratch module and returns the directory.
// The reference's own dependencies (its file lock) are not berth's, so on a
// fresh machine they come from the Go module proxy, as for `go install`.
// The reference is only run, never copied.
func buildReference(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	mod := filepath.Join(dir, "mod")
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(mod, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"go.mod":   "module refbuild\ngo 1.24\nrequire github.com/containernetworking/plugins v1.9.1\n",
		"tools.go": "//go:build tools\n\npackage tools\n\nimport _ \"github.com/containernetworking/plugins/plugins/ipam/host-local\"\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(bin, "host-local"), "github.com/containernetworking/plugins/plugins/ipam/host-local")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the reference host-local v1.9.1: %v: %s", err, out)
	}
	return bin
}
