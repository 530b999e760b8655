package crash_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// EnvCrashCNIPath names a directory of plugins already built with -tags
// crashpoint (to iterate on the tests without rebuilding); by default they
// are built into a temporary directory. BERTH_CNI_PATH is not used: it
// holds the normal build, in which crash points do nothing.
const EnvCrashCNIPath = "BERTH_CRASH_CNI_PATH"

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir := os.Getenv(EnvCrashCNIPath)
	if dir == "" {
		tmp, err := os.MkdirTemp("", "berth-crash-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "crash:", err)
			return 1
		}
		defer os.RemoveAll(tmp)
		root, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "crash: go env GOMOD:", err)
			return 1
		}
		cmd := exec.Command("go", "build", "-tags", "crashpoint", "-o", tmp+"/", "./plugins/...", "./cmd/...")
		cmd.Dir = strings.TrimSuffix(strings.TrimSpace(string(root)), "/go.mod")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "crash: building the plugins with -tags crashpoint: %v\n%s", err, out)
			return 1
		}
		dir = tmp
	}
	os.Setenv("BERTH_CNI_PATH", dir)
	return m.Run()
}
