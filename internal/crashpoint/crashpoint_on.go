//go:build crashpoint

package crashpoint

import (
	"os"
	"strconv"
	"syscall"
	"time"
)

// Env names the point at which the process kills itself ("bridge.add.veth").
const Env = "BERTH_CRASHPOINT"

// AtEnv is a moment (Unix nanoseconds): a process still running then kills
// itself, wherever it is (a crash at a random time). Every plugin of a
// chain shares it, so the moment falls in whichever plugin runs then; one
// that starts after it dies at once.
const AtEnv = "BERTH_CRASH_AT"

func init() {
	if at, err := strconv.ParseInt(os.Getenv(AtEnv), 10, 64); err == nil {
		time.AfterFunc(time.Until(time.Unix(0, at)), kill)
	}
}

// Hit kills the process with SIGKILL, as the OOM killer or a runtime's
// timeout would, when BERTH_CRASHPOINT is name: no deferred cleanup runs.
func Hit(name string) {
	if os.Getenv(Env) == name {
		kill()
	}
}

func kill() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is delivered before anything else runs
}
