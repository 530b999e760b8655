package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitCodes: the codes the help documents, for what needs no kernel:
// help, usage errors, unknown networks, read-only listing of an empty or
// missing config dir.
func TestExitCodes(t *testing.T) {
	empty := t.TempDir()
	conf := t.TempDir()
	if err := os.WriteFile(filepath.Join(conf, "a.conflist"), []byte(`{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge","attachmentsDir":"`+t.TempDir()+`"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args    []string
		code    int
		wantOut string
	}{
		{[]string{"--help"}, ExitOK, "Exit codes:"},
		{nil, ExitUsage, "Usage:"},
		{[]string{"frobnicate"}, ExitUsage, ""},
		{[]string{"network"}, ExitUsage, "Usage: berth network"},
		{[]string{"network", "inspect", "--help"}, ExitOK, "3  not found"},
		{[]string{"network", "ls", "--help"}, ExitOK, "-conf-dir"},
		{[]string{"network", "prune", "--help"}, ExitOK, "-force"},
		{[]string{"ps", "--help"}, ExitOK, "Exit codes:"},
		{[]string{"port", "--help"}, ExitOK, "docker port"},
		{[]string{"gc", "--help"}, ExitOK, "-cni-path"},
		{[]string{"network", "inspect"}, ExitUsage, ""},
		{[]string{"network", "inspect", "--bogus", "a"}, ExitUsage, ""},
		{[]string{"network", "inspect", "--conf-dir", conf, "nope"}, ExitNotFound, ""},
		{[]string{"network", "inspect", "--conf-dir", conf, "a", "--json", "--format", "{{.Name}}"}, ExitUsage, ""},
		{[]string{"network", "ls", "--conf-dir", empty}, ExitOK, "NAME"},
		{[]string{"network", "ls", "--conf-dir", filepath.Join(empty, "missing"), "-q"}, ExitOK, ""},
		{[]string{"network", "ls", "--conf-dir", conf, "-q"}, ExitOK, "a\n"},
		{[]string{"port"}, ExitUsage, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := Main(tt.args, &out, &errOut); code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("stdout lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}
