// Package linkref counts the users of host links that berth shares between
// attachments — a VLAN sub-interface made for a macvlan network, a
// host-access shim — so that the link goes exactly when its last user
// goes, whatever the number of plugin processes running at once.
//
// Each shared link has a state file <Dir>/<link>.json listing its users
// (network/containerID/ifname); every change happens under one exclusive
// flock on <Dir>/lock, which also covers creating and deleting the link,
// so no process ever sees a link without its users or removes one that
// another is about to use. Whether berth created the link is not kept
// here but on the link itself (its alias, see pkg/link): a link someone
// else made never carries berth's alias and is never deleted.
//
// Crash safety: a user is recorded before the link is created (intent
// first), so a plugin killed right after creating it leaves a state file
// naming it; GC of its network, which receives the valid attachments,
// drops the dead user and with it the link.
package linkref

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berthnet/berth/internal/atomicfile"
	"github.com/berthnet/berth/internal/flock"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// User is one attachment using a shared link.
type User struct {
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	// Addrs are the attachment's addresses where the link holds something
	// for them (a shim's host routes), so GC can remove that too.
	Addrs []string `json:"addrs,omitempty"`
}

// Is reports whether u and o are the same attachment.
func (u User) Is(o User) bool {
	return u.Network == o.Network && u.ContainerID == o.ContainerID && u.IfName == o.IfName
}

func (u User) String() string { return u.Network + "/" + u.ContainerID + "/" + u.IfName }

type state struct {
	Users []User `json:"users"`
	// Pending is set while a process creates the link: the kernel takes
	// the link's alias in a second request, so a creator killed between
	// the two leaves a link without it. Whoever finds Pending set holds
	// the lock after a dead creator, and knows the link is berth's.
	Pending bool `json:"pending,omitempty"`
}

// Store is the state directory (0700; files 0600).
type Store struct {
	Dir string
}

// Locked is the store under its lock; Unlock releases it.
type Locked struct {
	dir  string
	lock *os.File
}

// Lock takes the store's exclusive lock, creating the directory first.
func (s Store) Lock() (*Locked, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	path := filepath.Join(s.Dir, "lock")
	f, err := flock.Open(path, os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Locked{dir: s.Dir, lock: f}, nil
}

// Unlock releases the lock.
func (l *Locked) Unlock() { l.lock.Close() }

// validName refuses anything that is not a link name or could escape Dir.
func validName(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." || name == "lock" ||
		strings.ContainsAny(name, "/\x00: \t\n") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("link name %q: not usable as a state file name", name)
	}
	return nil
}

func (l *Locked) path(name string) string { return filepath.Join(l.dir, name+".json") }

// Users returns the recorded users of link name.
func (l *Locked) Users(name string) ([]User, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	st, err := l.read(name)
	return st.Users, err
}

func (l *Locked) read(name string) (state, error) {
	var st state
	b, err := os.ReadFile(l.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read %s: %w", l.path(name), err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode %s: %w", l.path(name), err)
	}
	return st, nil
}

// write stores st (temp file + rename). A file without users stays until
// Forget: a crash between the last Remove and deleting the link leaves
// the name for the next GC to find.
func (l *Locked) write(name string, st state) error {
	p := l.path(name)
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(p, b); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// Add records u as a user of link name (once: a retried ADD is the same
// user), and with creating the link as being created (Pending), in one
// write, before the link is created. Settle clears Pending once the link
// carries its owner.
func (l *Locked) Add(name string, u User, creating bool) error {
	if err := validName(name); err != nil {
		return err
	}
	st, err := l.read(name)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(st.Users, u.Is)
	if i < 0 {
		st.Users = append(st.Users, u)
	} else {
		st.Users[i] = u
	}
	st.Pending = st.Pending || creating
	return l.write(name, st)
}

// Pending reports whether link name's creator died before Settle (see
// state.Pending).
func (l *Locked) Pending(name string) (bool, error) {
	if err := validName(name); err != nil {
		return false, err
	}
	st, err := l.read(name)
	return st.Pending, err
}

// Settle clears Pending: the link exists and carries its owner.
func (l *Locked) Settle(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	st, err := l.read(name)
	if err != nil || !st.Pending {
		return err
	}
	st.Pending = false
	return l.write(name, st)
}

// Release drops u from every link's users and returns the links left
// without any user, for the caller to delete (if they are berth's) while
// still holding the lock, then Forget. A DEL need not know which links an
// attachment used: the state says.
func (l *Locked) Release(u User) (unused []string, err error) {
	unused, _, err = l.drop(u.Is)
	return unused, err
}

// Prune drops, from every link's users, those of network for which keep
// returns false (GC). It returns the links left without any user
// (including those a crash left with none), as Release does, and by link
// the users it dropped, whose Addrs tell what else to remove.
func (l *Locked) Prune(network string, keep func(User) bool) (unused []string, dropped map[string][]User, err error) {
	return l.drop(func(u User) bool { return u.Network == network && !keep(u) })
}

func (l *Locked) drop(gone func(User) bool) (unused []string, dropped map[string][]User, err error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", l.dir, err)
	}
	dropped = map[string][]User{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || validName(name) != nil {
			continue
		}
		st, err := l.read(name)
		if err != nil {
			return unused, dropped, err
		}
		var kept []User
		for _, u := range st.Users {
			if gone(u) {
				dropped[name] = append(dropped[name], u)
			} else {
				kept = append(kept, u)
			}
		}
		if len(kept) != len(st.Users) {
			st.Users = kept
			if err := l.write(name, st); err != nil {
				return unused, dropped, err
			}
		}
		if len(st.Users) == 0 {
			unused = append(unused, name)
		}
	}
	return unused, dropped, nil
}

// Forget removes link name's state file once the link is gone (or was not
// berth's to delete).
func (l *Locked) Forget(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	if err := os.Remove(l.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", l.path(name), err)
	}
	return nil
}
