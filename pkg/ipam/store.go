package ipam

import (
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/berthnet/berth/internal/atomicfile"
	"github.com/berthnet/berth/internal/flock"
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
//	<dataDir>/.berth/index/<network>/stamp    the network dir's state after berth's last change
//	<dataDir>/.berth/index/<network>/o/<xx>   "<key> <ip>" lines for the owners whose key starts with xx
//	<dataDir>/.berth/subnets.json             automatic subnets chosen per network
//
// where key is the SHA-256 of "<containerID>\r\n<ifname>" in hex. The
// reference reads every file of the network on every ADD and DEL to find
// an attachment's addresses; berth reads one of 256 bucket files (about 40
// lines at 10,000 reservations), and a rebuild writes at most 256 files
// whatever the number of reservations. The buckets are trusted only while
// the network directory's inode, mtime and ctime are those recorded in
// stamp after berth's last change: a reservation created or removed by
// anyone else (a reference binary) changes them, and the buckets are
// rebuilt from the reservation files. (Since Linux 6.13 a change following
// a stat gets a fine-grained timestamp, so even a foreign change within the
// same clock tick shows.) Every index hit is also checked against its
// reservation file. Allocation never depends on the index: reservation
// files are created exclusively, so an address taken behind berth's back
// is found taken.
const (
	metaDirName  = ".berth"
	lockName     = "lock"
	lastIPPrefix = "last_reserved_ip."
	lineBreak    = "\r\n"
	stampName    = "stamp"
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

// key names an owner in the index; a legacy owner shares its container's key
// with ifname "".
func ownerKey(id, ifname string) string {
	h := sha256.Sum256([]byte(id + lineBreak + ifname))
	return hex.EncodeToString(h[:])
}

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
	dir   string // <dataDir>/<network>
	meta  string // <dataDir>/.berth
	index string // <dataDir>/.berth/index/<network>
	lock  *os.File
	dirty bool // the network dir changed: save the stamp on Close
	// buckets are the loaded owner buckets (prefix -> key -> addresses);
	// those in changed are written on Close.
	buckets map[string]map[string][]string
	changed map[string]bool
	used    map[netip.Addr]bool // every reserved address, loaded on demand
	// lastOrig keeps each last_reserved_ip.<n> as it was before this
	// session changed it (nil: absent), for RestoreLast.
	lastOrig map[int][]byte
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
	// .berth/index/<network>/o is made by rebuild, which runs whenever
	// there is no matching stamp, so it exists whenever the stamp matches.
	s := &Store{dir: dir, meta: meta, index: filepath.Join(meta, "index", network),
		buckets: map[string]map[string][]string{}, changed: map[string]bool{}}
	lock, err := lockFile(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	s.lock = lock
	if err := s.validate(); err != nil {
		_ = lock.Close()
		return nil, err
	}
	s.sweepTemp()
	return s, nil
}

// sweepTemp removes temporary files that a writer killed between creating
// and renaming them left in the network's index directory. The network's
// lock is held, and only holders write there, so any such file is stale.
func (s *Store) sweepTemp() {
	stale, _ := filepath.Glob(filepath.Join(s.index, tmpPrefix+"*"))
	for _, p := range stale {
		_ = os.Remove(p)
	}
}

// lockFile opens (creating) path and takes an exclusive flock on it,
// blocking until other holders (berth or reference processes) are done.
func lockFile(path string) (*os.File, error) {
	return flock.Open(path, os.O_CREATE)
}

// Close writes the changed owner buckets and the stamp if anything changed, and
// releases the lock. The stamp goes last: a crash before it leaves a stamp
// that no longer matches, and the next Open rebuilds.
func (s *Store) Close() error {
	err := s.flush()
	if cerr := s.lock.Close(); err == nil { // closing releases the flock
		err = cerr
	}
	return err
}

func (s *Store) flush() error {
	for prefix := range s.changed {
		path := filepath.Join(s.index, "o", prefix)
		var buf strings.Builder
		for key, addrs := range s.buckets[prefix] {
			for _, a := range addrs {
				buf.WriteString(key + " " + a + "\n")
			}
		}
		var err error
		if buf.Len() == 0 {
			err = os.Remove(path)
			if errors.Is(err, fs.ErrNotExist) {
				err = nil
			}
		} else {
			// In place, not renamed: a bucket only changes along with the
			// network directory, so a crash mid-write leaves a stamp that
			// no longer matches and the next Open rebuilds.
			err = os.WriteFile(path, []byte(buf.String()), 0o600)
		}
		if err != nil {
			return fmt.Errorf("saving index: %w", err)
		}
	}
	clear(s.changed)
	if !s.dirty {
		return nil
	}
	st, err := s.stamp()
	if err != nil {
		return err
	}
	// Written in place: a torn stamp does not match the directory, which
	// only costs a rebuild.
	if err := os.WriteFile(filepath.Join(s.index, stampName), []byte(st), 0o600); err != nil {
		return fmt.Errorf("saving index stamp: %w", err)
	}
	s.dirty = false
	return nil
}

func (s *Store) stamp() (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(s.dir, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", s.dir, err)
	}
	return fmt.Sprintf("%d %d.%09d %d.%09d", st.Ino, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), nil
}

// validate rebuilds the owner buckets unless the stamp shows that nobody but
// berth changed the network since they were written.
func (s *Store) validate() error {
	want, err := s.stamp()
	if err != nil {
		return err
	}
	if got, err := os.ReadFile(filepath.Join(s.index, stampName)); err == nil && string(got) == want {
		return nil
	}
	return s.rebuild()
}

// rebuild reads every reservation file and rewrites the owner buckets.
func (s *Store) rebuild() error {
	all, err := s.Scan()
	if err != nil {
		return err
	}
	// Remove the stamp first: a crash in the middle must not leave
	// half-written buckets that a matching stamp would vouch for.
	if err := os.Remove(filepath.Join(s.index, stampName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rebuilding index: %w", err)
	}
	odir := filepath.Join(s.index, "o")
	if err := os.RemoveAll(odir); err != nil {
		return fmt.Errorf("rebuilding index: %w", err)
	}
	if err := os.MkdirAll(odir, 0o700); err != nil {
		return fmt.Errorf("rebuilding index: %w", err)
	}
	clear(s.buckets)
	for i := 0; i < 256; i++ {
		prefix := fmt.Sprintf("%02x", i)
		s.buckets[prefix] = map[string][]string{}
		s.changed[prefix] = true
	}
	addrs := make([]netip.Addr, 0, len(all))
	for a := range all {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range addrs {
		o := all[a]
		key := ownerKey(o.ID, o.IfName)
		s.buckets[key[:2]][key] = append(s.buckets[key[:2]][key], a.String())
	}
	s.used = make(map[netip.Addr]bool, len(all))
	for a := range all {
		s.used[a] = true
	}
	s.dirty = true
	return s.flush()
}

// Scan reads every reservation file of the network.
func (s *Store) Scan() (map[netip.Addr]Owner, error) {
	names, err := s.names()
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Addr]Owner, len(names))
	for _, a := range names {
		b, err := os.ReadFile(filepath.Join(s.dir, a.String()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading reservation: %w", err)
		}
		out[a] = parseOwner(b)
	}
	return out, nil
}

// names lists the reserved addresses from the directory alone (no file is
// read).
func (s *Store) names() ([]netip.Addr, error) {
	d, err := os.Open(s.dir)
	if err != nil {
		return nil, fmt.Errorf("reading store: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("reading store %s: %w", s.dir, err)
	}
	out := make([]netip.Addr, 0, len(names))
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			out = append(out, a) // not lock, last_reserved_ip.N, foreign files
		}
	}
	return out, nil
}

// Empty reports whether the network holds no reservation.
func (s *Store) Empty() (bool, error) {
	names, err := s.names()
	return len(names) == 0, err
}

// Owner reads who holds a, if anyone.
func (s *Store) Owner(a netip.Addr) (Owner, bool) {
	b, err := os.ReadFile(filepath.Join(s.dir, a.String()))
	if err != nil {
		return Owner{}, false
	}
	return parseOwner(b), true
}

// bucket loads (once) the owner bucket holding key.
func (s *Store) bucket(key string) map[string][]string {
	prefix := key[:2]
	if b, ok := s.buckets[prefix]; ok {
		return b
	}
	b := map[string][]string{}
	data, _ := os.ReadFile(filepath.Join(s.index, "o", prefix))
	for _, line := range strings.Split(string(data), "\n") {
		if k, a, ok := strings.Cut(line, " "); ok {
			b[k] = append(b[k], a)
		}
	}
	s.buckets[prefix] = b
	return b
}

func (s *Store) ownerAddrs(key string) []string { return s.bucket(key)[key] }

// ByOwner returns the addresses reserved by (id, ifname), sorted, legacy
// reservations of id included. Each is checked against its reservation
// file; a mismatch means the index was stale despite its stamp, and it is
// rebuilt.
func (s *Store) ByOwner(id, ifname string) ([]netip.Addr, error) {
	for attempt := 0; ; attempt++ {
		var out []netip.Addr
		stale := false
		for _, key := range []string{ownerKey(id, ifname), ownerKey(id, "")} {
			for _, str := range s.ownerAddrs(key) {
				a, err := netip.ParseAddr(str)
				o, ok := s.Owner(a)
				if err != nil || !ok || !o.Is(id, ifname) {
					stale = true
					continue
				}
				out = append(out, a)
			}
		}
		if !stale || attempt > 0 {
			slices.SortFunc(out, netip.Addr.Compare)
			return slices.Compact(out), nil
		}
		if err := s.rebuild(); err != nil {
			return nil, err
		}
	}
}

func (s *Store) addOwned(o Owner, a netip.Addr) {
	key := ownerKey(o.ID, o.IfName)
	b := s.bucket(key)
	b[key] = append(b[key], a.String())
	s.changed[key[:2]] = true
}

func (s *Store) dropOwned(o Owner, a netip.Addr) {
	key := ownerKey(o.ID, o.IfName)
	b := s.bucket(key)
	if b[key] = slices.DeleteFunc(b[key], func(x string) bool { return x == a.String() }); len(b[key]) == 0 {
		delete(b, key)
	}
	s.changed[key[:2]] = true
}

// Used reports whether a is known to be reserved without touching the disk:
// false also when the used set has not been loaded (see LoadUsed).
func (s *Store) Used(a netip.Addr) bool { return s.used[a] }

// LoadUsed lists the directory once so a search can skip reserved
// addresses in memory.
func (s *Store) LoadUsed() error {
	if s.used != nil {
		return nil
	}
	names, err := s.names()
	if err != nil {
		return err
	}
	s.used = make(map[netip.Addr]bool, len(names))
	for _, a := range names {
		s.used[a] = true
	}
	return nil
}

// Reserve creates a's reservation file for o and records a as the last
// address given from range set rangeID. It returns false when a is taken.
func (s *Store) Reserve(a netip.Addr, o Owner, rangeID int) (bool, error) {
	path := filepath.Join(s.dir, a.String())
	ok, err := s.createExclusive(path, []byte(o.content()))
	if err != nil {
		return false, fmt.Errorf("reserving %s: %w", a, err)
	}
	if !ok {
		if s.used != nil {
			s.used[a] = true
		}
		return false, nil
	}
	s.dirty = true
	s.addOwned(o, a)
	if s.used != nil {
		s.used[a] = true
	}
	last := filepath.Join(s.dir, lastIPPrefix+strconv.Itoa(rangeID))
	if _, saved := s.lastOrig[rangeID]; !saved {
		if s.lastOrig == nil {
			s.lastOrig = map[int][]byte{}
		}
		b, _ := os.ReadFile(last)
		s.lastOrig[rangeID] = b
	}
	if err := writeAtomic(s.index, last, []byte(a.String())); err != nil {
		_ = s.Release(a, o)
		return false, fmt.Errorf("recording last reserved address: %w", err)
	}
	return true, nil
}

// createExclusive makes path with data, failing (false, nil) if it exists.
// The content is complete the moment the name appears: it is written to a
// temporary file first and hard-linked into place (link fails on an existing
// name, like O_EXCL).
func (s *Store) createExclusive(path string, data []byte) (bool, error) {
	f, err := os.CreateTemp(s.index, tmpPrefix+"*")
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

// Release removes a's reservation, held by o; a missing file is not an
// error.
func (s *Store) Release(a netip.Addr, o Owner) error {
	err := os.Remove(filepath.Join(s.dir, a.String()))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("releasing %s: %w", a, err)
	}
	s.dirty = true
	s.dropOwned(o, a)
	delete(s.used, a)
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
		o, _ := s.Owner(a)
		errs = append(errs, s.Release(a, o))
	}
	return addrs, errors.Join(errs...)
}

// RestoreLast puts every last_reserved_ip.<n> this session changed back as
// it was, so that a failed ADD does not even move the round-robin.
func (s *Store) RestoreLast() error {
	var errs []error
	for id, b := range s.lastOrig {
		path := filepath.Join(s.dir, lastIPPrefix+strconv.Itoa(id))
		if b == nil {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		} else if err := writeAtomic(s.index, path, b); err != nil {
			errs = append(errs, err)
		}
	}
	s.lastOrig = nil
	s.dirty = true
	return errors.Join(errs...)
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

// tmpPrefix names temporary files: a store's live in its network's index
// directory (swept under the network's lock, see sweepTemp), the subnet
// table's in .berth/subnets.tmp (swept under its lock).
const tmpPrefix = atomicfile.TempPrefix

// writeAtomic writes data to a temporary file in tmpDir and renames it to
// path, so readers see the old or the new content; tmpDir keeps the
// temporary file out of the network directory, which the reference reads.
func writeAtomic(tmpDir, path string, data []byte) error {
	return atomicfile.Write(path, data, atomicfile.TempDir(tmpDir))
}
