package hostile_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/cni"
)

// world is a private host namespace, a container namespace and a state
// directory; plugins are executed as a runtime does (CNI_* environment,
// config on stdin) inside the host namespace.
type world struct {
	t       *testing.T
	host    *nstest.NS
	ctr     *nstest.NS
	dataDir string
	bin     string
}

func newWorld(t *testing.T) *world {
	nstest.RequireRoot(t)
	return &world{t: t, host: nstest.NewNS(t, "host"), ctr: nstest.NewNS(t, "ctr"), dataDir: t.TempDir(), bin: nstest.CNIPath(t)}
}

// base is the config each plugin gets from libcni for network "hnet":
// chained plugins with the prevResult a bridge ADD would have produced.
func (w *world) base(plugin string) map[string]any {
	prev := map[string]any{
		"cniVersion": "1.1.0",
		"interfaces": []any{
			map[string]any{"name": "br-hostile"},
			map[string]any{"name": "veth0hostile"},
			map[string]any{"name": "eth0", "sandbox": w.ctr.Path},
		},
		"ips": []any{map[string]any{"address": "10.98.0.2/24", "gateway": "10.98.0.1", "interface": 2}},
	}
	ipamConf := map[string]any{"type": "host-local", "subnet": "10.98.0.0/24", "dataDir": filepath.Join(w.dataDir, "networks")}
	c := map[string]any{"cniVersion": "1.1.0", "name": "hnet", "type": plugin}
	switch plugin {
	case "bridge":
		c["bridge"], c["isGateway"], c["ipMasq"], c["ipam"] = "br-hostile", true, true, ipamConf
	case "host-local":
		c["ipam"] = ipamConf
	case "portmap":
		c["prevResult"] = prev
		c["runtimeConfig"] = map[string]any{"portMappings": []any{
			map[string]any{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
		}}
	case "firewall":
		c["prevResult"], c["ingressPolicy"] = prev, "same-bridge"
	case "dnsname":
		c["prevResult"], c["dataDir"], c["internal"] = prev, filepath.Join(w.dataDir, "dnsname"), true
	case "tuning":
		c["prevResult"], c["dataDir"] = prev, filepath.Join(w.dataDir, "tuning")
		c["sysctl"] = map[string]any{"net.ipv4.conf.IFNAME.rp_filter": "1"}
	case "loopback":
	}
	return c
}

// exec runs plugin with env and stdin inside the host namespace and returns
// its stdout and stderr.
func (w *world) exec(plugin string, env map[string]string, stdin []byte) (stdout, stderr string) {
	w.t.Helper()
	cmd := exec.Command(filepath.Join(w.bin, plugin))
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := w.host.Do(func(ns.NetNS) error { return cmd.Run() })
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		w.t.Fatalf("running %s: %v", plugin, err)
	}
	return out.String(), errb.String()
}

// state is everything a plugin could have made: links in both namespaces,
// the host's nftables ruleset, files under the state directory.
func (w *world) state() string {
	w.t.Helper()
	var b strings.Builder
	for _, n := range []*nstest.NS{w.host, w.ctr} {
		b.WriteString(n.MustExec(w.t, "ip", "-o", "link", "show"))
	}
	b.WriteString(w.host.MustExec(w.t, "nft", "list", "ruleset"))
	_ = filepath.WalkDir(w.dataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b.WriteString("file " + p + "\n")
		}
		return nil
	})
	return b.String()
}

var allPlugins = []string{"bridge", "host-local", "portmap", "firewall", "dnsname", "tuning", "loopback"}

// hostileCase is one bad input: a change to the environment or the
// config, the code the plugin must answer with and a word of the message
// (the field).
type hostileCase struct {
	name    string
	plugins []string // nil: all
	env     func(w *world, env map[string]string)
	conf    func(plugin string, c map[string]any)
	code    uint
	field   map[string]string // per plugin; "" key for all
}

func setEnv(k, v string) func(*world, map[string]string) {
	return func(_ *world, env map[string]string) { env[k] = v }
}

func unsetEnv(k string) func(*world, map[string]string) {
	return func(_ *world, env map[string]string) { delete(env, k) }
}

func all(field string) map[string]string { return map[string]string{"": field} }

// tenMB is a 10 MB JSON string.
var tenMB = strings.Repeat("A", 10<<20)

// wrongType puts a value of the wrong JSON type into a field each plugin
// decodes, and names that field.
var wrongType = map[string][2]string{
	"bridge":     {"mtu", "mtu"},
	"host-local": {"ipam.ranges", "ranges"},
	"portmap":    {"snat", "snat"},
	"firewall":   {"ingressPolicy", "ingressPolicy"},
	"dnsname":    {"upstreams", "upstreams"},
	"tuning":     {"mtu", "mtu"},
	"loopback":   {"dns", "dns"},
}

// tenMBField is a string field of each plugin, named as its messages name
// it (loopback has none).
var tenMBField = map[string]string{
	"bridge": "bridge", "host-local": "subnet", "portmap": "snat", "firewall": "ingressPolicy",
	"dnsname": "domainName", "tuning": "mac", "loopback": "dns",
}

// fieldPath is where a field lives in the plugin's config.
func fieldPath(plugin, field string) string {
	if plugin == "host-local" || plugin == "bridge" && field == "subnet" {
		return "ipam." + field
	}
	return field
}

func setPath(c map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		c = c[p].(map[string]any)
	}
	c[parts[len(parts)-1]] = v
}

func portMapping(k string, v any) func(string, map[string]any) {
	return func(_ string, c map[string]any) {
		pm := c["runtimeConfig"].(map[string]any)["portMappings"].([]any)[0].(map[string]any)
		pm[k] = v
	}
}

var cases = []hostileCase{
	{name: "container ID with path traversal", env: setEnv("CNI_CONTAINERID", "../../etc/passwd"), code: cni.CodeInvalidEnv, field: all("containerID")},
	{name: "container ID with a slash", env: setEnv("CNI_CONTAINERID", "abc/def"), code: cni.CodeInvalidEnv, field: all("containerID")},
	{name: "ifname ..", env: setEnv("CNI_IFNAME", ".."), code: cni.CodeInvalidEnv, field: all("interface name")},
	{name: "ifname with path traversal", env: setEnv("CNI_IFNAME", "../eth0"), code: cni.CodeInvalidEnv, field: all("interface name")},
	{name: "ifname of 16 bytes", env: setEnv("CNI_IFNAME", "eth0123456789abc"), code: cni.CodeInvalidEnv, field: all("interface name")},
	{name: "network name with path traversal", conf: func(_ string, c map[string]any) { c["name"] = "../../etc" }, code: cni.CodeInvalidConfig, field: all("network name")},
	{name: "network name with a slash", conf: func(_ string, c map[string]any) { c["name"] = "a/b" }, code: cni.CodeInvalidConfig, field: all("network name")},
	{name: "unknown cniVersion", conf: func(_ string, c map[string]any) { c["cniVersion"] = "7.7.7" }, code: cni.CodeIncompatibleVersion, field: all("7.7.7")},
	{name: "missing CNI_CONTAINERID", env: unsetEnv("CNI_CONTAINERID"), code: cni.CodeInvalidEnv, field: all("CNI_CONTAINERID")},
	{name: "missing CNI_NETNS", env: unsetEnv("CNI_NETNS"), code: cni.CodeInvalidEnv, field: all("CNI_NETNS")},
	{name: "missing CNI_IFNAME", env: unsetEnv("CNI_IFNAME"), code: cni.CodeInvalidEnv, field: all("CNI_IFNAME")},
	{name: "missing CNI_PATH", env: unsetEnv("CNI_PATH"), code: cni.CodeInvalidEnv, field: all("CNI_PATH")},
	{
		name: "netns path that is a regular file", plugins: []string{"bridge", "tuning", "loopback"},
		env: func(w *world, env map[string]string) {
			f := filepath.Join(w.t.TempDir(), "not-a-netns")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				w.t.Fatal(err)
			}
			env["CNI_NETNS"] = f
		},
		code: cni.CodeInvalidNetNS, field: all("CNI_NETNS"),
	},
	{
		name: "netns path that does not exist", plugins: []string{"bridge", "tuning", "loopback"},
		env: setEnv("CNI_NETNS", "/run/netns/berth-no-such-netns"), code: cni.CodeInvalidNetNS, field: all("CNI_NETNS"),
	},
	{
		name: "invalid CIDR", plugins: []string{"bridge", "host-local"},
		conf: func(_ string, c map[string]any) { c["ipam"].(map[string]any)["subnet"] = "10.98.0.0/33" },
		code: cni.CodeInvalidConfig, field: all("subnet"),
	},
	{
		name: "wrong JSON type",
		conf: func(p string, c map[string]any) { setPath(c, wrongType[p][0], []any{1, 2}) },
		code: cni.CodeDecode, field: map[string]string{"bridge": "mtu", "host-local": "ranges", "portmap": "snat", "firewall": "ingressPolicy", "dnsname": "upstreams", "tuning": "mtu", "loopback": "dns"},
	},
	{
		name: "10 MB config of the wrong type",
		conf: func(p string, c map[string]any) { setPath(c, fieldPath(p, tenMBField[p]), []any{tenMB}) },
		code: cni.CodeDecode, field: tenMBField,
	},
	{
		// The value is quoted in the message: the answer must stay small.
		name: "10 MB value", plugins: []string{"bridge", "host-local", "firewall", "dnsname", "tuning"},
		conf: func(p string, c map[string]any) { setPath(c, fieldPath(p, tenMBField[p]), tenMB) },
		code: cni.CodeInvalidConfig, field: tenMBField,
	},
	{name: "10 MB hostIP", plugins: []string{"portmap"}, conf: portMapping("hostIP", tenMB), code: cni.CodeInvalidConfig, field: all("hostIP")},
	{
		name: "route to an invalid CIDR", plugins: []string{"bridge", "host-local"},
		conf: func(_ string, c map[string]any) {
			c["ipam"].(map[string]any)["routes"] = []any{map[string]any{"dst": "0.0.0.0/99"}}
		},
		code: cni.CodeInvalidConfig, field: all("routes[0]"),
	},
	{
		name: "gateway outside the subnet", plugins: []string{"bridge", "host-local"},
		conf: func(_ string, c map[string]any) { c["ipam"].(map[string]any)["gateway"] = "10.99.0.1" },
		code: cni.CodeInvalidConfig, field: all("gateway"),
	},
	{
		name: "runtimeConfig.ips not an address", plugins: []string{"bridge", "host-local"},
		conf: func(_ string, c map[string]any) { c["runtimeConfig"] = map[string]any{"ips": []any{"10.98.0.300/24"}} },
		code: cni.CodeInvalidConfig, field: all("runtimeConfig.ips[0]"),
	},
	{
		name: "CNI_ARGS IP not an address", plugins: []string{"bridge", "host-local"},
		env: setEnv("CNI_ARGS", "IgnoreUnknown=1;IP=10.98.0.300"), code: cni.CodeInvalidConfig, field: all("CNI_ARGS IP[0]"),
	},
	{
		name: "portMappings not a list", plugins: []string{"portmap"},
		conf: func(_ string, c map[string]any) { c["runtimeConfig"] = map[string]any{"portMappings": "8080:80"} },
		code: cni.CodeDecode, field: all("portMappings"),
	},
	{name: "hostPort 70000", plugins: []string{"portmap"}, conf: portMapping("hostPort", 70000), code: cni.CodeInvalidConfig, field: all("hostPort")},
	{name: "hostPort -1", plugins: []string{"portmap"}, conf: portMapping("hostPort", -1), code: cni.CodeInvalidConfig, field: all("hostPort")},
	{name: "containerPort -1", plugins: []string{"portmap"}, conf: portMapping("containerPort", -1), code: cni.CodeInvalidConfig, field: all("containerPort")},
	{name: "hostIP not an address", plugins: []string{"portmap"}, conf: portMapping("hostIP", "10.0.0.256"), code: cni.CodeInvalidConfig, field: all("hostIP")},
	{
		name: "prevResult interface index out of range", plugins: []string{"portmap", "firewall", "dnsname", "tuning"},
		conf: func(_ string, c map[string]any) {
			c["prevResult"].(map[string]any)["ips"].([]any)[0].(map[string]any)["interface"] = 7
		},
		code: cni.CodeDecode, field: all("interface"),
	},
}

// TestHostileInputs runs every plugin's ADD on each bad input, as a
// runtime would, and checks the answer: a CNI error JSON on stdout with
// the right code and a message naming the field, nothing on stderr that
// looks like a Go panic, and nothing created (links, nftables, files).
func TestHostileInputs(t *testing.T) {
	w := newWorld(t)
	clean := w.state()
	for _, tc := range cases {
		plugins := tc.plugins
		if plugins == nil {
			plugins = allPlugins
		}
		for _, p := range plugins {
			t.Run(tc.name+"/"+p, func(t *testing.T) {
				env := map[string]string{
					"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "hostile1", "CNI_NETNS": w.ctr.Path,
					"CNI_IFNAME": "eth0", "CNI_PATH": w.bin,
				}
				if tc.env != nil {
					tc.env(w, env)
				}
				c := w.base(p)
				if tc.conf != nil {
					tc.conf(p, c)
				}
				stdin, err := json.Marshal(c)
				if err != nil {
					t.Fatal(err)
				}
				stdout, stderr := w.exec(p, env, stdin)
				for _, s := range []string{stdout, stderr} {
					if strings.Contains(s, "goroutine ") || strings.Contains(s, "panic") {
						t.Fatalf("Go panic output:\n%.2000s", s)
					}
				}
				var ce types.Error
				if err := json.Unmarshal([]byte(stdout), &ce); err != nil || ce.Code == 0 {
					t.Fatalf("stdout %.500q: want a CNI error JSON (%v)", stdout, err)
				}
				field := tc.field[p]
				if field == "" {
					field = tc.field[""]
				}
				msg := ce.Msg + " " + ce.Details
				if ce.Code != tc.code || !strings.Contains(msg, field) {
					t.Errorf("got code %d %q, want code %d naming %q", ce.Code, msg, tc.code, field)
				}
				if len(stdout) > 4096 {
					t.Errorf("error JSON is %d bytes: the message should not echo the input", len(stdout))
				}
				if got := w.state(); got != clean {
					t.Errorf("state changed:\nbefore:\n%s\nafter:\n%s", clean, got)
					// Later cases compare with what is there now.
					clean = got
				}
			})
		}
	}
}
