// Package atomicfile writes files so that a reader, or a process started
// after a crash, sees either the old content or the new, never a part.
package atomicfile

import (
	"errors"
	"fmt"
	"github.com/berthnet/berth/internal/crashpoint"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

type options struct {
	tmpDir     string
	crashPoint string
	sync       bool
}

// Option changes how Write writes.
type Option func(*options)

// TempDir puts the temporary file in dir rather than beside the target: for
// directories whose every file is read as data (the reference host-local
// takes any file in a network's directory for a reservation). When dir is
// on another filesystem than the target, Write falls back to writing the
// target in place.
func TempDir(dir string) Option { return func(o *options) { o.tmpDir = dir } }

// TempPrefix starts the name of every temporary file Write makes: a
// sweeper of files a writer killed before its rename left looks for it.
const TempPrefix = ".tmp-"

// CrashPoint names a crash point (internal/crashpoint) between writing the
// temporary file and renaming it, where a kill leaves a temporary file
// behind, so tests can prove it is swept.
func CrashPoint(name string) Option { return func(o *options) { o.crashPoint = name } }

// Sync flushes the data to disk before the rename, for state on disk that
// must survive a power loss in its new form. State on tmpfs (/run) needs no
// Sync.
func Sync() Option { return func(o *options) { o.sync = true } }

// Write writes data (mode 0600) to a temporary file and renames it to path.
// The temporary file is named ".tmp-<base>-<random>" so that directory
// listings can skip it by its leading dot; it is removed on every error.
func Write(path string, data []byte, opts ...Option) error {
	o := options{tmpDir: filepath.Dir(path)}
	for _, opt := range opts {
		opt(&o)
	}
	f, err := os.CreateTemp(o.tmpDir, TempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if o.sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if o.crashPoint != "" {
		crashpoint.Hit(o.crashPoint)
	}
	if err := os.Rename(tmp, path); err != nil {
		if errors.Is(err, unix.EXDEV) {
			// The temporary directory is on another filesystem: plain write.
			os.Remove(tmp)
			ok = true
			return os.WriteFile(path, data, 0o600)
		}
		return err
	}
	ok = true
	return nil
}
