package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// nsID identifies a network namespace: the device and inode of its nsfs
// file, the same through every path and bind mount that refers to it.
type nsID struct{ Dev, Ino uint64 }

// netnsID stats path, which must refer to a network namespace.
func netnsID(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return nsID{}, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if fs.Type != unix.NSFS_MAGIC {
		return nsID{}, fmt.Errorf("%s is not a namespace file", path)
	}
	return nsID{Dev: st.Dev, Ino: st.Ino}, nil
}

// checkJoinerPath refuses a CNI_NETNS that cannot be replaced by a bind
// mount: /proc/<pid>/ns/net is a process's own namespace link, which no
// mount can change; the runtime must give a bind-mounted file.
func checkJoinerPath(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%q: must be an absolute path", path)
	}
	if p := filepath.Clean(path); p == "/proc" || strings.HasPrefix(p, "/proc/") {
		return fmt.Errorf("%q: a process's namespace cannot be replaced; create the namespace as a bind-mounted file (ip netns add, /run/netns/NAME) and start the container in it", path)
	}
	return nil
}

// bind makes path refer to the namespace at target by mounting target's
// nsfs file over it. The runtime's own mount stays underneath, so an
// unmount gives the path back as the runtime made it.
//
// Same as: mount --bind TARGET PATH
func bind(target, path string) error {
	if err := unix.Mount(target, path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s over %s: %w", target, path, err)
	}
	return nil
}

// unbind removes the topmost mount at path, if path still refers to the
// joined namespace want; otherwise (already unmounted, the runtime's own
// namespace, path gone) it leaves the path alone. The caller holds the
// joins lock, so two DELs never both unmount.
//
// Same as: umount --lazy PATH
func unbind(path string, want nsID) error {
	if got, err := netnsID(path); err != nil || got != want {
		// Gone, or not (no longer) the joined namespace: nothing of ours
		// is mounted there.
		return nil
	}
	return unmount(path)
}

// unmount detaches the topmost mount at path. MNT_DETACH as ip netns del
// does: an nsfs bind mount is never busy for a reason the caller could
// wait out. EINVAL: nothing is mounted there any more.
func unmount(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}
