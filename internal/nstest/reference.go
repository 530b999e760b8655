package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ReferenceVersion is the containernetworking/plugins release berth is a
// drop-in for, and compared with.
const ReferenceVersion = "v1.9.1"

// BuildReference builds the reference plugins named by their paths under
// plugins/ ("main/bridge", "ipam/host-local", "meta/portmap") into a
// temporary directory, in a scratch module, and returns the directory. The
// reference's own dependencies are not berth's, so on a fresh machine they
// come from the Go module proxy, as for `go install`. The reference is
// only run, never copied.
func BuildReference(t testing.TB, plugins ...string) string {
	t.Helper()
	dir := t.TempDir()
	mod := filepath.Join(dir, "mod")
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(mod, 0o700); err != nil {
		t.Fatal(err)
	}
	var imports strings.Builder
	pkgs := make([]string, len(plugins))
	for i, p := range plugins {
		pkgs[i] = "github.com/containernetworking/plugins/plugins/" + p
		fmt.Fprintf(&imports, "import _ %q\n", pkgs[i])
	}
	files := map[string]string{
		"go.mod":   "module refbuild\ngo 1.24\nrequire github.com/containernetworking/plugins " + ReferenceVersion + "\n",
		"tools.go": "//go:build tools\n\npackage tools\n\n" + imports.String(),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", append([]string{"build", "-o", bin + "/"}, pkgs...)...)
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the reference plugins %s %v: %v: %s", ReferenceVersion, plugins, err, out)
	}
	return bin
}
