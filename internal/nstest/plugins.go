package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// EnvCNIPath names the directory holding built berth plugins and daemons.
// `make test` sets it to ./bin after building; otherwise Main builds them.
const EnvCNIPath = "BERTH_CNI_PATH"

// Main is TestMain for integration packages: it makes sure the binaries of
// plugins/ and cmd/ (the daemons plugins start) exist (building them into a temporary directory when
// BERTH_CNI_PATH is not set), runs the tests and removes what it built.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(EnvCNIPath) == "" {
		dir, err := os.MkdirTemp("", "berth-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "nstest:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		root, err := moduleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "nstest:", err)
			return 1
		}
		// Build each binary on its own so one that does not compile (work in
		// progress elsewhere) fails only the tests that need it; `make test`
		// builds them all first and stops on any failure. Into one
		// directory, as `make build` does: plugins find the daemons
		// through CNI_PATH.
		plugins, _ := filepath.Glob(filepath.Join(root, "plugins", "*"))
		cmds, _ := filepath.Glob(filepath.Join(root, "cmd", "*"))
		for _, d := range append(plugins, cmds...) {
			rel, _ := filepath.Rel(root, d)
			cmd := exec.Command("go", "build", "-o", dir+"/", "./"+rel)
			cmd.Dir = root
			// As `make build`: static, like the binaries users install.
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "nstest: building %s: %v\n%s", rel, err, out)
			}
		}
		os.Setenv(EnvCNIPath, dir)
	}
	return m.Run()
}

// EnvModuleRoot names the module's directory where no Go toolchain is
// there to ask (the VM lane: test binaries built with go test -c).
const EnvModuleRoot = "BERTH_MODULE_ROOT"

func moduleRoot() (string, error) {
	if root := os.Getenv(EnvModuleRoot); root != "" {
		return root, nil
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the berth module")
	}
	return strings.TrimSuffix(mod, "/go.mod"), nil
}

// CNIPath returns the directory with the built plugins.
func CNIPath(t testing.TB) string {
	t.Helper()
	p := os.Getenv(EnvCNIPath)
	if p == "" {
		t.Fatal("BERTH_CNI_PATH is not set: call nstest.Main from TestMain or run `make test`")
	}
	return p
}
