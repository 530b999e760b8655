// Package cnifuzz holds what berth's fuzz targets share: the property every
// config decoder must keep (never panic; answer bad input with a CNI error
// of an allowed code whose message names the plugin, or accept it) and the
// seeds taken from conf-examples.
package cnifuzz

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
)

// ConfigCodes are the codes a config decoder may answer with: the spec's
// codes for bad input (incompatible version, unsupported field, invalid
// environment, decoding failure, invalid config). Anything else (999, a
// kernel code) means the decoder did something it should not have.
var ConfigCodes = []uint{
	cni.CodeIncompatibleVersion, cni.CodeUnsupportedField, cni.CodeInvalidEnv,
	cni.CodeDecode, cni.CodeInvalidConfig,
}

// CheckErr fails t unless err is a *types.Error whose code is in codes and
// whose message starts with "<plugin>:" and carries no Go stack trace or
// panic text. A nil err passes: the caller checks the accepted value.
func CheckErr(t testing.TB, plugin string, err error, codes ...uint) {
	t.Helper()
	if err == nil {
		return
	}
	if len(codes) == 0 {
		codes = ConfigCodes
	}
	var ce *types.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error is %T, want *types.Error: %v", err, err)
	}
	if !slices.Contains(codes, ce.Code) {
		t.Fatalf("code %d, want one of %v: %s", ce.Code, codes, ce.Msg)
	}
	if !strings.HasPrefix(ce.Msg, plugin+":") {
		t.Fatalf("message %q does not start with %q", ce.Msg, plugin+":")
	}
	for _, bad := range []string{"goroutine ", "panic", ".go:"} {
		if strings.Contains(ce.Msg, bad) {
			t.Fatalf("message carries %q: %s", bad, ce.Msg)
		}
	}
}

// Seeds adds to f every plugin config of type typ found in the module's
// conf-examples, as libcni hands it to the plugin (name and cniVersion
// injected), so fuzzing starts from configs that pass.
func Seeds(f *testing.F, typ string) [][]byte {
	f.Helper()
	root, err := moduleRoot()
	if err != nil {
		f.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "conf-examples", "*.conflist"))
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var list struct {
			CNIVersion string           `json:"cniVersion"`
			Name       string           `json:"name"`
			Plugins    []map[string]any `json:"plugins"`
		}
		if err := json.Unmarshal(b, &list); err != nil {
			f.Fatalf("%s: %v", file, err)
		}
		for _, p := range list.Plugins {
			if p["type"] != typ {
				continue
			}
			p["name"], p["cniVersion"] = list.Name, list.CNIVersion
			conf, err := json.Marshal(p)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, conf)
		}
	}
	return out
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
