//go:build !crashpoint

// Package crashpoint marks the steps of an ADD or DEL where a crash leaves
// the most half-done state, so that tests can kill a plugin exactly there.
// In normal builds Hit does nothing and costs nothing; binaries built with
// -tags crashpoint kill themselves at the point named by BERTH_CRASHPOINT
// (see crashpoint_on.go). Only test/crash builds them.
package crashpoint

// Hit marks a crash point; a no-op without the crashpoint build tag.
func Hit(string) {}
