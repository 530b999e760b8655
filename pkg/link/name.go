package link

import (
	"errors"
	"fmt"
	"strings"
)

// MaxNameLen is the longest interface name the kernel takes: IFNAMSIZ (16)
// bytes with the terminating NUL.
const MaxNameLen = 15

// ValidName applies the kernel's rules for interface names (dev_valid_name
// in net/core/dev.c): 1 to 15 bytes, not "." or "..", and no '/', ':' or
// whitespace. A name that passes is also safe as one path component.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("longer than %d characters", MaxNameLen)
	case name == "." || name == ".." || strings.ContainsAny(name, "/:\x00 \t\n\v\f\r"):
		return errors.New("not a valid interface name")
	}
	return nil
}
