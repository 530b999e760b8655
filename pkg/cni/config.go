package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// Versions are the CNI spec versions every berth plugin speaks.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// Decode unmarshals a plugin's stdin config into v (a struct that embeds
// types.NetConf). Syntax and type errors are code 6 and name the field.
//
// Unknown fields are ignored, as the reference plugins do: runtimes
// (nerdctl, Podman, kubelet) add fields of their own and configs written for
// other plugin versions must keep working after a binary swap.
func Decode(plugin string, stdin []byte, v any) error {
	if err := json.Unmarshal(stdin, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "config"
			}
			return Errorf(CodeDecode, "%s: %s: cannot use JSON %s as %s", plugin, field, te.Value, te.Type)
		}
		return Errorf(CodeDecode, "%s: decoding config: %v", plugin, err)
	}
	return nil
}

// PrevResult parses conf's prevResult (if any) and converts it to the
// current result type. It returns nil, nil when there is none.
func PrevResult(plugin string, conf *types.NetConf) (*current.Result, error) {
	if conf.RawPrevResult == nil {
		return nil, nil
	}
	// The CNI library's conversion dereferences list entries without
	// checking them (a null interface in a 0.4.0 result panics it), and
	// plugins index interfaces by ips[].interface: check the shape first.
	if err := checkPrevShape(conf.RawPrevResult); err != nil {
		return nil, Errorf(CodeDecode, "%s: prevResult: %v", plugin, err)
	}
	if err := version.ParsePrevResult(conf); err != nil {
		return nil, Errorf(CodeDecode, "%s: prevResult: %v", plugin, err)
	}
	res, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, Errorf(CodeDecode, "%s: prevResult: converting to %s: %v", plugin, current.ImplementedSpecVersion, err)
	}
	for i, ipc := range res.IPs {
		_, bits := ipc.Address.Mask.Size()
		if ipc.Address.IP == nil || bits == 0 || (ipc.Address.IP.To4() != nil) != (bits == 32) {
			return nil, Errorf(CodeDecode, "%s: prevResult: ips[%d].address %q: not an address with a prefix length of its family", plugin, i, ipc.Address.String())
		}
	}
	return res, nil
}

// checkPrevShape checks a raw prevResult's lists: interfaces, ips and
// routes hold objects (never null), and every ips[].interface is an index
// into interfaces.
func checkPrevShape(raw map[string]any) error {
	count := func(key string) (int, error) {
		v, ok := raw[key]
		if !ok || v == nil {
			return 0, nil
		}
		list, ok := v.([]any)
		if !ok {
			return 0, fmt.Errorf("%s: must be a list", key)
		}
		for i, e := range list {
			if _, ok := e.(map[string]any); !ok {
				return 0, fmt.Errorf("%s[%d]: must be an object", key, i)
			}
		}
		return len(list), nil
	}
	nIfaces, err := count("interfaces")
	if err != nil {
		return err
	}
	if _, err := count("routes"); err != nil {
		return err
	}
	if _, err := count("ips"); err != nil {
		return err
	}
	ips, _ := raw["ips"].([]any)
	for i, e := range ips {
		v, ok := e.(map[string]any)["interface"]
		if !ok || v == nil {
			continue
		}
		n, ok := v.(float64)
		if !ok || n != float64(int(n)) || n < 0 || int(n) >= nIfaces {
			return fmt.Errorf("ips[%d].interface %v: not an index into the %d interfaces", i, v, nIfaces)
		}
	}
	return nil
}

// NeedPrevResult is PrevResult for what cannot work without one (a chained
// plugin's ADD, any CHECK): a missing prevResult is code 7 saying so.
func NeedPrevResult(plugin string, conf *types.NetConf) (*current.Result, error) {
	prev, err := PrevResult(plugin, conf)
	if err != nil {
		return nil, err
	}
	if prev == nil {
		return nil, Errorf(CodeInvalidConfig, "%s: no prevResult: %s must be chained after the plugin that creates the interface and its addresses (bridge)", plugin, plugin)
	}
	return prev, nil
}

// Print writes result to stdout in the config's cniVersion.
func Print(result types.Result, cniVersion string) error {
	return types.PrintResult(result, cniVersion)
}

var (
	nameRE        = regexp.MustCompile(`^[a-zA-Z0-9_.\-]+$`)
	containerIDRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)
)

// SafeName checks that s can be used as one path component (a network name
// in a store path, say): the CNI name charset, and never "." or "..".
func SafeName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if s == "." || s == ".." || strings.ContainsAny(s, "/\x00") || !nameRE.MatchString(s) || len(s) > 255 {
		return fmt.Errorf("%s %q: must match %s, and . and .. are not names", what, s, nameRE)
	}
	return nil
}

// SafeContainerID checks a container ID the same way, with the spec's
// container ID charset.
func SafeContainerID(id string) error {
	if id == "" {
		return errors.New("container ID is empty")
	}
	if !containerIDRE.MatchString(id) || len(id) > 255 {
		return fmt.Errorf("container ID %q: must match %s", id, containerIDRE)
	}
	return nil
}

// Attachment identifies one attachment of a container to a network, the key
// of everything a plugin keeps (reservations, rules, registry entries), and
// of GC's cni.dev/valid-attachments.
type Attachment struct {
	ContainerID string
	IfName      string
}

// ValidSet turns GC's valid-attachments list into a set.
func ValidSet(list []types.GCAttachment) map[Attachment]bool {
	m := make(map[Attachment]bool, len(list))
	for _, a := range list {
		m[Attachment{ContainerID: a.ContainerID, IfName: a.IfName}] = true
	}
	return m
}
