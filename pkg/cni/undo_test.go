package cni

import (
	"errors"
	"strings"
	"testing"
)

func TestUndone(t *testing.T) {
	var buf strings.Builder
	old := UndoLog
	UndoLog = &buf
	t.Cleanup(func() { UndoLog = old })

	Undone("bridge", "deleting veth1234", nil)
	if buf.Len() != 0 {
		t.Fatalf("a step that worked was reported: %q", buf.String())
	}
	Undone("bridge", "deleting veth1234", errors.New("device busy"))
	if got, want := buf.String(), "bridge: undoing a failed ADD: deleting veth1234: device busy\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
