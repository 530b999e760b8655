package steptrace

import (
	"bytes"
	"regexp"
	"testing"
	"time"
)

func TestTrace(t *testing.T) {
	tests := []struct {
		name string
		env  string
		want string // regexp; empty: nothing written
	}{
		{"off", "", ""},
		{"on", "1", `^berth-trace bridge ADD main\+\d+\.\d\dms conf=\d+\.\d\d \[ipam=2\.00\] veth=\d+\.\d\d total=\d+\.\d\d\n$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("BERTH_TRACE", tt.env)
			var buf bytes.Buffer
			old := out
			out = &buf
			t.Cleanup(func() { out = old })

			tr := Start("bridge ADD")
			tr.Mark("conf")
			tr.Span("ipam", 2*time.Millisecond)
			tr.Mark("veth")
			tr.Done()

			if tt.want == "" {
				if tr != nil || buf.Len() != 0 {
					t.Fatalf("tracing off: got %v, %q", tr, buf.String())
				}
				return
			}
			if !regexp.MustCompile(tt.want).MatchString(buf.String()) {
				t.Fatalf("got %q, want %s", buf.String(), tt.want)
			}
		})
	}
}
