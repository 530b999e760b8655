package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
)

const (
	plugin = "tuning"

	// defaultDataDir is the reference plugin's, so backups written by one
	// binary are restored by the other after a swap on a live node.
	defaultDataDir = "/run/cni/tuning"
	// defaultAllowlist is the reference's sysctl allowlist: one regexp a
	// line; when the file exists, every sysctl must match one of them.
	defaultAllowlist = "/etc/cni/tuning/allowlist.conf"
)

// NetConf is the reference tuning config plus allowlistFile (berth: the
// allowlist's path, for tests and non-default layouts).
type NetConf struct {
	types.NetConf
	DataDir       string            `json:"dataDir,omitempty"`
	AllowlistFile string            `json:"allowlistFile,omitempty"`
	SysCtl        map[string]string `json:"sysctl"`
	Mac           string            `json:"mac,omitempty"`
	Promisc       bool              `json:"promisc,omitempty"`
	Mtu           int               `json:"mtu,omitempty"`
	TxQLen        *int              `json:"txQLen,omitempty"`
	Allmulti      *bool             `json:"allmulti,omitempty"`

	RuntimeConfig struct {
		Mac string `json:"mac,omitempty"`
	} `json:"runtimeConfig,omitempty"`
	// Args are per-container overrides a runtime passes in the config
	// ("args": {"cni": {...}}), as the reference accepts.
	Args *struct {
		CNI *argsCNI `json:"cni"`
	} `json:"args"`

	mac net.HardwareAddr
}

// changesNothing reports whether the config sets nothing at all on the
// interface or its namespace.
func (c *NetConf) changesNothing() bool {
	return len(c.SysCtl) == 0 && c.mac == nil && !c.Promisc && c.Mtu == 0 && c.TxQLen == nil && c.Allmulti == nil
}

type argsCNI struct {
	SysCtl   map[string]string `json:"sysctl"`
	Mac      *string           `json:"mac,omitempty"`
	Promisc  *bool             `json:"promisc,omitempty"`
	Mtu      *int              `json:"mtu,omitempty"`
	Allmulti *bool             `json:"allmulti,omitempty"`
	TxQLen   *int              `json:"txQLen,omitempty"`
}

// envArgs is CNI_ARGS: MAC=... sets the address, as the reference accepts.
type envArgs struct {
	types.CommonArgs
	MAC types.UnmarshallableString `json:"mac,omitempty"`
}

// loadConf decodes and validates stdin, applying overrides in the
// reference's order: config, CNI_ARGS MAC, runtimeConfig.mac, args.cni.
func loadConf(stdin []byte, cniArgs string) (*NetConf, error) {
	if err := checkDuplicateSysctls(stdin); err != nil {
		return nil, err
	}
	c := &NetConf{}
	if err := cni.Decode(plugin, stdin, c); err != nil {
		return nil, err
	}
	if c.DataDir == "" {
		c.DataDir = defaultDataDir
	}
	if c.AllowlistFile == "" {
		c.AllowlistFile = defaultAllowlist
	}
	if cniArgs != "" {
		// Runtimes pass keys of their own (K8S_POD_NAME, …), not always
		// with IgnoreUnknown: only MAC is ours, the rest is not an error.
		var e envArgs
		e.IgnoreUnknown = true
		if err := types.LoadArgs(cniArgs, &e); err != nil {
			return nil, cni.Errorf(cni.CodeInvalidEnv, "%s: CNI_ARGS %q: %v", plugin, cniArgs, err)
		}
		if e.MAC != "" {
			c.Mac = string(e.MAC)
		}
	}
	if c.RuntimeConfig.Mac != "" {
		c.Mac = c.RuntimeConfig.Mac
	}
	if c.Args != nil && c.Args.CNI != nil {
		a := c.Args.CNI
		if len(a.SysCtl) > 0 && c.SysCtl == nil {
			c.SysCtl = map[string]string{}
		}
		for k, v := range a.SysCtl {
			c.SysCtl[k] = v
		}
		if a.Mac != nil {
			c.Mac = *a.Mac
		}
		if a.Promisc != nil {
			c.Promisc = *a.Promisc
		}
		if a.Mtu != nil {
			c.Mtu = *a.Mtu
		}
		if a.Allmulti != nil {
			c.Allmulti = a.Allmulti
		}
		if a.TxQLen != nil {
			c.TxQLen = a.TxQLen
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *NetConf) validate() error {
	if c.Mac != "" {
		hw, err := net.ParseMAC(c.Mac)
		if err != nil || len(hw) != 6 {
			return cni.InvalidField(plugin, "mac", c.Mac, "not a 48-bit MAC address")
		}
		if hw[0]&1 != 0 {
			return cni.InvalidField(plugin, "mac", c.Mac, "multicast bit set: must be a unicast address")
		}
		c.mac = hw
	}
	if c.Mtu != 0 && (c.Mtu < 68 || c.Mtu > 65535) {
		return cni.InvalidField(plugin, "mtu", c.Mtu, "must be between 68 and 65535")
	}
	if c.TxQLen != nil && *c.TxQLen < 0 {
		return cni.InvalidField(plugin, "txQLen", *c.TxQLen, "must not be negative")
	}
	for k, v := range c.SysCtl {
		if strings.ContainsAny(v, "\n\x00") {
			return cni.InvalidField(plugin, "sysctl "+k, fmt.Sprintf("%q", v), "value must be one line")
		}
		// The interface name is not known yet: check the key's shape
		// with a harmless stand-in.
		if _, err := sysctlPath(k, "eth0"); err != nil {
			return err
		}
	}
	return nil
}

// checkDuplicateSysctls rejects a sysctl key given twice: encoding/json
// would silently keep the last one (the reference rejects them too).
func checkDuplicateSysctls(stdin []byte) error {
	var top struct {
		SysCtl json.RawMessage `json:"sysctl"`
	}
	if err := json.Unmarshal(stdin, &top); err != nil || len(top.SysCtl) == 0 {
		return nil // cni.Decode reports syntax errors with the field
	}
	dec := json.NewDecoder(bytes.NewReader(top.SysCtl))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		k, _ := tok.(string)
		if seen[k] {
			return cni.InvalidField(plugin, "sysctl", k, "given twice")
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// sysctlPath turns a key ("net.ipv4.conf.IFNAME.arp_filter", or with
// slashes) into its path under /proc/sys, refusing anything outside net/.
// Dots become slashes before IFNAME is replaced, so an interface name with a
// dot (eth0.100) stays one component, as with the reference.
func sysctlPath(key, ifName string) (string, error) {
	rel := key
	if !strings.Contains(rel, "/") {
		rel = strings.ReplaceAll(rel, ".", "/")
	}
	rel = strings.Replace(rel, "IFNAME", ifName, 1)
	parts := strings.Split(rel, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return "", cni.InvalidField(plugin, "sysctl", key, "malformed key")
		}
	}
	if parts[0] != "net" || len(parts) < 3 {
		return "", cni.InvalidField(plugin, "sysctl", key, "only net.* sysctls of the container's namespace can be set")
	}
	return link.SysctlPath(rel), nil
}

// allowlist reads the sysctl allowlist: nil, nil when the file does not
// exist (everything under net.* is allowed then, as with the reference).
func readAllowlist(file string) ([]*regexp.Regexp, error) {
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "%s: reading sysctl allowlist: %v", plugin, err)
	}
	var res []*regexp.Regexp
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		re, err := regexp.Compile(line)
		if err != nil {
			return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: sysctl allowlist %s line %d %q: %v", plugin, file, n, line, err)
		}
		res = append(res, re)
	}
	// An existing but empty allowlist allows nothing, rather than
	// everything: the admin created it to restrict.
	if res == nil {
		res = []*regexp.Regexp{}
	}
	return res, nil
}

// checkAllowed matches each sysctl key (as written, IFNAME included) against
// the allowlist.
func (c *NetConf) checkAllowed() error {
	if len(c.SysCtl) == 0 {
		return nil
	}
	allow, err := readAllowlist(c.AllowlistFile)
	if err != nil || allow == nil {
		return err
	}
	for k := range c.SysCtl {
		ok := false
		for _, re := range allow {
			if re.MatchString(k) {
				ok = true
				break
			}
		}
		if !ok {
			return cni.InvalidField(plugin, "sysctl", k, "not allowed by "+c.AllowlistFile)
		}
	}
	return nil
}
