package link

import "testing"

func TestValidName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"eth0", true},
		{"eth0.100", true},
		{"br-0123456789ab", true}, // 15 bytes
		{"veth@peer+x_y-z", true},
		{"", false},
		{"br-0123456789abc", false}, // 16 bytes
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a:1", false},
		{"a b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\x00b", false},
	} {
		if err := ValidName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
