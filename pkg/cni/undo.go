package cni

import (
	"fmt"
	"io"
	"os"
)

// UndoLog is where Undone writes: the plugin's stderr, which runtimes
// capture in their logs (stdout carries the result or the error JSON).
var UndoLog io.Writer = os.Stderr

// Undone reports a step of a failed ADD's undo that failed too (err nil:
// nothing to say). The runtime gets the ADD's own error, and will not call
// DEL for an ADD that failed, so what the undo left behind must at least
// be said.
func Undone(plugin, step string, err error) {
	if err != nil {
		fmt.Fprintf(UndoLog, "%s: undoing a failed ADD: %s: %v\n", plugin, step, err)
	}
}
