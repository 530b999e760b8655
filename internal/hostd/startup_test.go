package hostd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartup: a daemon's config comes from its environment variable and
// its log goes to the file the config names; a bad or missing config is an
// error (the caller exits 1).
func TestStartup(t *testing.T) {
	dir := t.TempDir()
	type conf struct {
		LogFile string `json:"logFile"`
	}
	tests := []struct {
		name, env string
		set       bool
		wantErr   string
	}{
		{"not set", "", false, "not set"},
		{"bad JSON", `{"logFile":`, true, "bad BERTH_TEST_CONF"},
		{"log dir refused", `{"logFile":"/proc/berth/x.log"}`, true, "log file"},
		{"good", `{"logFile":"` + filepath.Join(dir, "sub", "d.log") + `"}`, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.set {
				t.Setenv("BERTH_TEST_CONF", tt.env)
			} else {
				os.Unsetenv("BERTH_TEST_CONF")
			}
			var c conf
			logger, closeLog, err := Startup("BERTH_TEST_CONF", "testd", "a test daemon", &c, func() string { return c.LogFile })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			logger.Print("hello")
			closeLog()
			b, err := os.ReadFile(c.LogFile)
			if err != nil || !strings.Contains(string(b), "testd[") || !strings.Contains(string(b), "hello") {
				t.Fatalf("log file: got %q, %v; want a testd[pid] line saying hello", b, err)
			}
		})
	}
}
