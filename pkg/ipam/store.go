package ipam

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// On-disk layout, shared with the reference host-local (the reservation
// files are the source of truth):
//
//	<dataDir>/<network>/lock                  flock'd by every writer
//	<dataDir>/<network>/<ip>                  "<containerID>\r\n<ifname>"
//	<dataDir>/<network>/last_reserved_ip.<n>  last address given from range set n
//
// berth adds, outside the network directories so the reference never reads
// them:
//
//	<dataDir>/.berth/index/<network>  a cache of the reservation files
//	<dataDir>/.berth/subnets.json     automatic subnets chosen per network
//
// The index makes lookups by (containerID, ifname) and the search for a free
// address cost nothing per reservation: the reference reads every file of
// the network on every ADD. It is trusted only while the network
// directory's inode, mtime and ctime are those recorded after berth's last
// change: any file created or removed by someone else (a reference binary)
// changes them, and the index is rebuilt from the files. Since Linux 6.13
// a change following a stat gets a fine-grained timestamp, so a foreign
// change within the same clock tick is still seen. Allocation never depends
// on the index alone: reservation files are created exclusively (link(2)),
// so an address taken behind berth's back is found taken anyway.
const (
	metaDirName  = ".berth"
	lockName     = "lock"
	lastIPPrefix = "last_reserved_ip."
	lineBreak    = "\r\n"
	indexMagic   = "berth-host-local-index 1"
)

// Owner is who holds a reservation. Legacy reservation files (written by
// old reference versions) hold only the container ID.
type Owner struct {
	ID     string
	IfName string
	Legacy bool
}

// Is reports whether the reservation belongs to (id, ifname).
func (o Owner) Is(id, ifname string) bool {
	return o.ID == id && (o.Legacy || o.IfName == ifname)
}

func (o Owner) content() string { return o.ID + lineBreak + o.IfName }

func parseOwner(b []byte) Owner {
	s := strings.TrimSpace(string(b))
	if id, ifname, ok := strings.Cut(s, lineBreak); ok {
		return Owner{ID: id, IfName: ifname}
	}
	return Owner{ID: s, Legacy: true}
}

// Store is one network's reservations, locked for the caller's exclusive
// use from Open to Close.
type Store struct {
	dir       string
	meta      string
	indexPath string
	lock      *os.File
	owners    map[netip.Addr]Owner
	changed   bool
}

// ErrNoStore is returned by Open with create=false when the network has no
// directory (nothing was ever reserved).
var ErrNoStore = errors.New("no store for this network")

// Open locks the network's store, creating it when create is set. The lock
// is the reference's: an exclusive flock on <dataDir>/<network>/lock.
func Open(dataDir, network string, create bool) (*Store, error) {
	dir := filepath.Join(dataDir, network)
	meta := filepath.Join(dataDir, metaDirName)
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating store %s: %w", dir, err)
		}
	} else if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoStore
	}
	if err := os.MkdirAll(filepath.Join(meta, "index"), 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", meta, err)
	}
	lock, err := lockFile(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, meta: meta, indexPath: filepath.Join(meta, "index", network), lock: lock}
	if err := s.load(); err != nil {
		_ = s.unlock()
		return nil, err
	}
	return s, nil
}

// lockFile opens (creating) path and takes an exclusive flock on it,
// blocking until other holders (berth or reference processes) are done.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return f, nil
}

func (s *Store) unlock() error {
	// Closing the descriptor releases the flock.
	return s.lock.Close()
}

// Close saves the index if anything changed and releases the lock.
func (s *Store) Close() error {
	var err error
	if s.changed {
		err = s.saveIndex()
	}
	if uerr := s.unlock(); err == nil {
		err = uerr
	}
	return err
}

func (s *Store) stamp() (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(s.dir, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", s.dir, err)
	}
	return fmt.Sprintf("%d %d.%09d %d.%09d", st.Ino, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), nil
}

// load reads the index when it is current, else rebuilds it from the files.
func (s *Store) load() error {
	stamp, err := s.stamp()
	if err != nil {
		return err
	}
	if owners, ok := readIndex(s.indexPath, stamp); ok {
		s.owners = owners
		return nil
	}
	return s.rebuild()
}

func (s *Store) rebuild() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("reading store: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("reading store %s: %w", s.dir, err)
	}
	s.owners = make(map[netip.Addr]Owner, len(names))
	for _, name := range names {
		a, err := netip.ParseAddr(name)
		if err != nil {
			continue // lock, last_reserved_ip.N, foreign files
		}
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("reading reservation: %w", err)
		}
		s.owners[a] = parseOwner(b)
	}
	s.changed = true
	return nil
}

func needsQuote(s string) bool { return strings.ContainsAny(s, "\t\n\r\"") || s == "" }

func field(s string) string {
	if needsQuote(s) {
		return strconv.Quote(s)
	}
	return s
}

func unfield(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		return strconv.Unquote(s)
	}
	return s, nil
}

// readIndex returns the cached owners when the index exists and its stamp
// matches.
func readIndex(path, stamp string) (map[netip.Addr]Owner, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	header, rest, _ := bytes.Cut(b, []byte("\n"))
	if string(header) != indexMagic+" "+stamp {
		return nil, false
	}
	owners := make(map[netip.Addr]Owner, bytes.Count(rest, []byte("\n")))
	sc := bufio.NewScanner(bytes.NewReader(rest))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), "\t")
		if len(parts) != 4 {
			return nil, false
		}
		a, err := netip.ParseAddr(parts[0])
		if err != nil {
			return nil, false
		}
		id, err1 := unfield(parts[1])
		ifname, err2 := unfield(parts[2])
		if err1 != nil || err2 != nil {
			return nil, false
		}
		owners[a] = Owner{ID: id, IfName: ifname, Legacy: parts[3] == "L"}
	}
	return owners, sc.Err() == nil
}

func (s *Store) saveIndex() error {
	stamp, err := s.stamp()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.Grow(64 * (len(s.owners) + 1))
	buf.WriteString(indexMagic + " " + stamp + "\n")
	for a, o := range s.owners {
		legacy := "-"
		if o.Legacy {
			legacy = "L"
		}
		fmt.Fprintf(&buf, "%s\t%s\t%s\t%s\n", a, field(o.ID), field(o.IfName), legacy)
	}
	if err := writeAtomic(s.meta, s.indexPath, buf.Bytes()); err != nil {
		return fmt.Errorf("saving index: %w", err)
	}
	s.changed = false
	return nil
}

// writeAtomic writes data to a temporary file in tmpDir and renames it to
// path (same filesystem), so readers see the old or the new content.
func writeAtomic(tmpDir, path string, data []byte) error {
	f, err := os.CreateTemp(tmpDir, "tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Owner returns who holds a, if anyone.
func (s *Store) Owner(a netip.Addr) (Owner, bool) {
	o, ok := s.owners[a]
	return o, ok
}

// Len is the number of reservations.
func (s *Store) Len() int { return len(s.owners) }

// Owners returns every reservation (the map must not be modified).
func (s *Store) Owners() map[netip.Addr]Owner { return s.owners }

// ByOwner returns the addresses reserved by (id, ifname), sorted. Each hit
// is checked against its file; a mismatch means the index was stale
// despite its stamp, and it is rebuilt.
func (s *Store) ByOwner(id, ifname string) ([]netip.Addr, error) {
	for attempt := 0; ; attempt++ {
		var out []netip.Addr
		stale := false
		for a, o := range s.owners {
			if !o.Is(id, ifname) {
				continue
			}
			b, err := os.ReadFile(filepath.Join(s.dir, a.String()))
			if err != nil || parseOwner(b) != o {
				stale = true
				break
			}
			out = append(out, a)
		}
		if !stale || attempt > 0 {
			slices.SortFunc(out, netip.Addr.Compare)
			return out, nil
		}
		if err := s.rebuild(); err != nil {
			return nil, err
		}
	}
}

// Reserve creates a's reservation file for o and records a as the last
// address given from range set rangeID. It returns false when a is taken.
func (s *Store) Reserve(a netip.Addr, o Owner, rangeID int) (bool, error) {
	if _, taken := s.owners[a]; taken {
		return false, nil
	}
	path := filepath.Join(s.dir, a.String())
	ok, err := s.createExclusive(path, []byte(o.content()))
	if err != nil {
		return false, fmt.Errorf("reserving %s: %w", a, err)
	}
	if !ok {
		// Taken behind the index's back: learn who holds it.
		if b, err := os.ReadFile(path); err == nil {
			s.owners[a] = parseOwner(b)
			s.changed = true
		}
		return false, nil
	}
	s.owners[a] = o
	s.changed = true
	last := filepath.Join(s.dir, lastIPPrefix+strconv.Itoa(rangeID))
	if err := writeAtomic(s.meta, last, []byte(a.String())); err != nil {
		_ = s.Release(a)
		return false, fmt.Errorf("recording last reserved address: %w", err)
	}
	return true, nil
}

// createExclusive makes path with data, failing (false, nil) if it exists.
// The content is complete the moment the name appears: it is written to a
// temporary file first and hard-linked into place (link fails on an existing
// name, like O_EXCL).
func (s *Store) createExclusive(path string, data []byte) (bool, error) {
	f, err := os.CreateTemp(s.meta, "tmp-")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return false, werr
	}
	err = os.Link(tmp, path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	case errors.Is(err, unix.EXDEV):
		// dataDir/<network> is another filesystem than dataDir/.berth:
		// fall back to the reference's O_EXCL create.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		_, werr := f.Write(data)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			return false, werr
		}
		return true, nil
	default:
		return false, err
	}
}

// Release removes a's reservation; a missing file is not an error.
func (s *Store) Release(a netip.Addr) error {
	err := os.Remove(filepath.Join(s.dir, a.String()))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("releasing %s: %w", a, err)
	}
	delete(s.owners, a)
	s.changed = true
	return nil
}

// ReleaseOwner releases every reservation of (id, ifname) and returns them.
func (s *Store) ReleaseOwner(id, ifname string) ([]netip.Addr, error) {
	addrs, err := s.ByOwner(id, ifname)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range addrs {
		errs = append(errs, s.Release(a))
	}
	return addrs, errors.Join(errs...)
}

// LastReserved returns the address last given from range set rangeID, if
// recorded.
func (s *Store) LastReserved(rangeID int) (netip.Addr, bool) {
	b, err := os.ReadFile(filepath.Join(s.dir, lastIPPrefix+strconv.Itoa(rangeID)))
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	return a.Unmap(), err == nil
}
