package link

import (
	"fmt"
	"os"
	"strings"
)

// These act on the namespace of the calling thread: /proc/sys/net is the
// namespace of the thread that opens the file.

// SysctlPath returns the /proc/sys file of a sysctl key, given dotted
// (net.ipv4.ip_forward) or with slashes (net/ipv4/conf/eth0.100/forwarding,
// for keys with a component that has a dot, an interface name say), as
// sysctl(8) takes them.
func SysctlPath(key string) string {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return "/proc/sys/" + strings.TrimPrefix(key, "/")
}

// ReadSysctl returns the value in path (a /proc/sys file) without its
// trailing newline.
func ReadSysctl(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// WriteSysctl writes value to path (a /proc/sys file), as sysctl -w does.
// The kernel's refusal of a value (EINVAL) comes from the write, and is
// the error returned.
func WriteSysctl(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(value))
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// Sysctl sets a sysctl of the current namespace (key as SysctlPath takes
// it), writing only when the value differs: writes to /proc/sys are slower
// than reads and some trigger work in the kernel.
func Sysctl(key, value string) error {
	path := SysctlPath(key)
	if cur, err := ReadSysctl(path); err == nil && strings.TrimSpace(cur) == value {
		return nil
	}
	if err := WriteSysctl(path, value); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}
