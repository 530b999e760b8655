package registry

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$`)

// ValidName checks a container name or alias: DNS characters, at most 253
// bytes, labels of at most 63.
func ValidName(s string) error {
	if len(s) > 253 || !nameRE.MatchString(s) {
		return errors.New("must be letters, digits, '_', '-' and '.', not starting or ending with '-' or '.'")
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return errors.New("each dot-separated label must have 1 to 63 characters")
		}
	}
	return nil
}

// podArgs are the CNI_ARGS names come from: Podman, nerdctl and kubelets
// pass the container's (or pod's) name in K8S_POD_NAME.
type podArgs struct {
	types.CommonArgs
	K8S_POD_NAME types.UnmarshallableString //nolint:revive // the wire name
}

// NameError is a K8S_POD_NAME that cannot be a name.
type NameError struct {
	Name string
	Err  error
}

func (e *NameError) Error() string {
	return fmt.Sprintf("CNI_ARGS K8S_POD_NAME %q: %v", e.Name, e.Err)
}

// ContainerNames derives a container's names from its CNI_ARGS and ID, the
// way Docker users address containers: the runtime's name (K8S_POD_NAME)
// first, then the 12-character short ID. A CNI_ARGS that does not parse is
// an error, and so is a name that is not a valid name (a *NameError); the
// short ID is returned with either, for callers that can do without the
// name.
func ContainerNames(cniArgs, containerID string) ([]string, error) {
	var pa podArgs
	pa.IgnoreUnknown = true
	var names []string
	var nameErr error
	if err := types.LoadArgs(cniArgs, &pa); err != nil {
		nameErr = fmt.Errorf("CNI_ARGS: %w", err)
	} else if n := string(pa.K8S_POD_NAME); n != "" {
		if err := ValidName(n); err != nil {
			nameErr = &NameError{Name: n, Err: err}
		} else {
			names = append(names, n)
		}
	}
	// Docker resolves the short (12-character) container ID too.
	short := containerID
	if len(short) > 12 {
		short = short[:12]
	}
	if ValidName(short) == nil && !slices.Contains(names, short) {
		names = append(names, short)
	}
	return names, nameErr
}
