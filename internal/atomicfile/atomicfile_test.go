package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts func(dir string) []Option
	}{
		{"beside", func(string) []Option { return nil }},
		{"sync", func(string) []Option { return []Option{Sync()} }},
		{"tempdir", func(dir string) []Option {
			tmp := filepath.Join(dir, "tmp")
			if err := os.Mkdir(tmp, 0o700); err != nil {
				t.Fatal(err)
			}
			return []Option{TempDir(tmp)}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := tt.opts(dir)
			path := filepath.Join(dir, "f")
			for _, data := range []string{"first", "second"} {
				if err := Write(path, []byte(data), opts...); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(path)
				if err != nil || string(got) != data {
					t.Fatalf("content: got %q, %v; want %q", got, err, data)
				}
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode: got %v, %v; want 0600", fi.Mode(), err)
			}
			assertNoTemp(t, dir)
		})
	}
}

// A failed rename (the target is a directory) leaves no temporary file.
func TestWriteFailureCleansUp(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "d")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []byte("x")); err == nil {
		t.Fatal("Write over a non-empty directory: got nil error")
	}
	assertNoTemp(t, dir)
}

func assertNoTemp(t testing.TB, dir string) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(dir, "*", ".tmp-*"))
	top, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if left = append(left, top...); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
