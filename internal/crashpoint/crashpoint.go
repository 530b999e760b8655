// Package crashpoint lets tests kill a plugin at a named point (kill -9,
// no deferred cleanup) to prove that what a crash leaves behind is
// cleaned by GC. Hit is a no-op unless the binary is built with
// `-tags crashpoint`; then it SIGKILLs its own process when the
// environment variable BERTH_CRASHPOINT equals the point's name.
package crashpoint

// Env names the crash point to stop at.
const Env = "BERTH_CRASHPOINT"
