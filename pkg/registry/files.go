package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/berthnet/berth/internal/atomicfile"
	"github.com/berthnet/berth/internal/flock"
)

// Files is the local-file backend: root/<network>/<containerID>@<ifname>.json,
// one JSON document per entry. Writes go to a temp file renamed into place,
// so a reader never sees half an entry; writers of one network serialize on
// an flock of root/<network>.lock (kept outside the network directory so
// that the directory can be removed while locked).
type Files struct {
	root string
}

// OpenFiles returns a file store rooted at dir, creating it (0700).
func OpenFiles(dir string) (*Files, error) {
	if dir == "" {
		return nil, errors.New("registry: file backend needs a directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Files{root: dir}, nil
}

// Close does nothing; it is there for Store.
func (f *Files) Close() error { return nil }

// lock takes the network's write lock; the returned func releases it.
// The lock file goes with the network's last entry (see Delete), so a lock
// taken on a file that was unlinked meanwhile is dropped and taken again on
// the file now at the path.
func (f *Files) lock(network string) (func(), error) {
	path := filepath.Join(f.root, network+".lock")
	for {
		fd, err := flock.Open(path, os.O_CREATE)
		if err != nil {
			return nil, fmt.Errorf("registry: lock %s: %w", network, err)
		}
		held, herr := fd.Stat()
		now, nerr := os.Stat(path)
		if herr == nil && nerr == nil && os.SameFile(held, now) {
			// Closing the descriptor drops the flock.
			return func() { fd.Close() }, nil
		}
		fd.Close()
		if herr != nil {
			return nil, fmt.Errorf("registry: lock %s: %w", network, herr)
		}
	}
}

// Put writes e atomically.
func (f *Files) Put(_ context.Context, e *Entry) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("registry: encoding entry: %w", err)
	}
	unlock, err := f.lock(e.Network)
	if err != nil {
		return err
	}
	defer unlock()
	dir := filepath.Join(f.root, e.Network)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	tmp := f.tempDir(e.Network)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	sweepTemp(tmp)
	return writeAtomic(filepath.Join(dir, EntryName(e.ContainerID, e.IfName)+".json"), tmp, b)
}

// tempDirName holds, per network, the temporary files of entries being
// written. "~" is in no network name, so it is never taken for a network.
const tempDirName = "~tmp"

// tempDir is where a network's entries are written before their rename:
// apart from the entries, so that sweeping what a killed writer left reads
// a directory that is almost always empty rather than one file per
// attachment (sweeping the network's own directory made every ADD and DEL
// read all its entries).
func (f *Files) tempDir(network string) string {
	return filepath.Join(f.root, tempDirName, network)
}

// sweepTemp removes the temporary files a writer killed before its rename
// left in dir (a network's temporary directory). Called with the network's
// lock held: only holders write there, so every file found is stale.
func sweepTemp(dir string) {
	stale, _ := filepath.Glob(filepath.Join(dir, atomicfile.TempPrefix+"*"))
	for _, p := range stale {
		_ = os.Remove(p)
	}
}

// writeAtomic writes an entry, through a temporary file in tmp. No fsync:
// the store lives on tmpfs (/run) by default, where it is meaningless, and
// state must not outlive a reboot anyway.
func writeAtomic(path, tmp string, b []byte) error {
	if err := atomicfile.Write(path, b, atomicfile.TempDir(tmp)); err != nil {
		return fmt.Errorf("registry: writing %s: %w", path, err)
	}
	return nil
}

// Get reads one entry.
func (f *Files) Get(_ context.Context, network, containerID, ifName string) (*Entry, error) {
	if err := ValidKey(network, containerID, ifName); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	e, err := readEntry(filepath.Join(f.root, network, EntryName(containerID, ifName)+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return e, err
}

func readEntry(path string) (*Entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("registry: %s: %w", path, err)
	}
	return &e, nil
}

// Delete removes an entry, and the network's directory with its last one.
func (f *Files) Delete(_ context.Context, network, containerID, ifName string) error {
	if err := ValidKey(network, containerID, ifName); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	unlock, err := f.lock(network)
	if err != nil {
		return err
	}
	defer unlock()
	dir := filepath.Join(f.root, network)
	if err := os.Remove(filepath.Join(dir, EntryName(containerID, ifName)+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("registry: %w", err)
	}
	tmp := f.tempDir(network)
	sweepTemp(tmp)
	// Fails harmlessly (ENOTEMPTY, ENOENT) unless this was the last entry;
	// then the network's lock file goes too, while we hold it (lock sees
	// that and retries on a fresh file).
	if err := os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
		_ = os.Remove(tmp)
		_ = os.Remove(filepath.Join(f.root, network+".lock"))
	}
	return nil
}

// List reads the network's entries in key order.
func (f *Files) List(_ context.Context, network string) ([]*Entry, error) {
	if err := SafeNetwork(network); err != nil {
		return nil, err
	}
	dir := filepath.Join(f.root, network)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	var out []*Entry
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".json") || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		e, err := readEntry(filepath.Join(dir, de.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while we listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Networks lists the network directories.
func (f *Files) Networks(context.Context) ([]string, error) {
	des, err := os.ReadDir(f.root)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	var out []string
	for _, de := range des {
		if de.IsDir() && SafeNetwork(de.Name()) == nil {
			out = append(out, de.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// Root is the store's directory.
func (f *Files) Root() string { return f.root }
