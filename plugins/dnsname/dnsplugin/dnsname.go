// Package dnsplugin is the dnsname plugin's logic, shared by its two
// binaries: dnsname (plugins/dnsname), which keeps names in local files,
// and dnsname-etcd (cmd/dnsname-etcd), the same plugin with the etcd
// registry linked in. They are two because linking the etcd client (gRPC,
// protobuf) costs every process start ~2-3 ms of package init and a
// three times larger binary, whether or not the config uses etcd: dnsname
// runs in every Podman ADD and DEL, etcd networks are the rare case, so
// dnsname hands a config with the etcd backend to dnsname-etcd (execRegistry).
package dnsplugin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/miekg/dns"

	"github.com/berthnet/berth/internal/crashpoint"
	"github.com/berthnet/berth/internal/steptrace"
	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/nameserver/sidecar"
	"github.com/berthnet/berth/pkg/registry"
)

const plugin = "dnsname"

// About is the plugin's VERSION line.
const About = "berth dnsname: container names on user-defined networks, with a DNS sidecar"

// Funcs are the plugin's commands, for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus}
}

// OpenEtcd opens the etcd registry; nil in a binary that does not link the
// etcd client (dnsname), which then runs EtcdBinary for such a config.
var OpenEtcd func(*registry.Config) (registry.Store, error)

// DefaultDataDir holds the registry, the sidecar's socket, pid and log. It
// is under /run: names must not outlive a reboot.
const DefaultDataDir = "/run/cni/dnsname"

// NetConf is the plugin's configuration, a superset of Podman's dnsname
// plugin ({"type":"dnsname","domainName":"dns.podman","capabilities":{"aliases":true}}).
type NetConf struct {
	types.NetConf
	// DomainName is the search domain; name.DomainName resolves like name.
	DomainName string `json:"domainName"`
	// DataDir holds the registry files and the sidecar's state.
	DataDir string `json:"dataDir"`
	// LogFile is where the sidecar logs; default DataDir/dnsname.log.
	LogFile string `json:"logFile"`
	// Upstreams ("ip" or "ip:port") get other names; default: the host's
	// resolv.conf as the sidecar reads it when it starts.
	Upstreams []string `json:"upstreams"`
	// Internal networks never forward other names (they are refused).
	Internal bool `json:"internal"`
	// DockerCompat would make 127.0.0.11 the container's nameserver, as
	// Docker does; not supported yet (refused with code 2).
	DockerCompat bool `json:"dockerCompat"`
	// Registry selects the backend; default: files under DataDir/registry.
	Registry *registry.Config `json:"registry"`

	// attachmentsDir: the attachments registry (not the names registry
	// above), where ADD completes the entry with the DNS it adds.
	registry.AttachConf

	RuntimeConfig struct {
		Aliases map[string][]string `json:"aliases"`
	} `json:"runtimeConfig"`

	upstreams []netip.AddrPort
}

// errNeverAdded: the config is one no ADD can have succeeded with, so DEL
// has nothing to undo.
var errNeverAdded = errors.New("config that ADD refuses")

// loadConf decodes and validates stdin. For DEL (lenient) only what DEL
// uses is checked: a config ADD would refuse must not make DEL fail
// forever, and DEL must succeed when ADD never did.
func loadConf(stdin []byte, lenient bool) (*NetConf, error) {
	c := &NetConf{}
	if err := cni.Decode(plugin, stdin, c); err != nil {
		return nil, err
	}
	if err := cni.SafeName("network name", c.Name); err != nil {
		return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: %v", plugin, err)
	}
	if c.DomainName == "" {
		c.DomainName = "dns.podman"
	}
	c.DomainName = strings.TrimSuffix(c.DomainName, ".")
	if err := registry.ValidName(c.DomainName); err != nil && !lenient {
		return nil, cni.InvalidField(plugin, "domainName", fmt.Sprintf("%q", c.DomainName), err.Error())
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if !filepath.IsAbs(c.DataDir) {
		return nil, cni.InvalidField(plugin, "dataDir", fmt.Sprintf("%q", c.DataDir), "must be an absolute path")
	}
	c.DataDir = filepath.Clean(c.DataDir)
	if c.LogFile == "" {
		c.LogFile = filepath.Join(c.DataDir, "dnsname.log")
	}
	if !filepath.IsAbs(c.LogFile) {
		return nil, cni.InvalidField(plugin, "logFile", fmt.Sprintf("%q", c.LogFile), "must be an absolute path")
	}
	for i, u := range c.Upstreams {
		ap, err := parseUpstream(u)
		if err != nil && lenient {
			continue
		}
		if err != nil {
			return nil, cni.InvalidField(plugin, fmt.Sprintf("upstreams[%d]", i), fmt.Sprintf("%q", u), err.Error())
		}
		c.upstreams = append(c.upstreams, ap)
	}
	if c.Registry == nil {
		c.Registry = &registry.Config{}
	}
	switch c.Registry.Backend {
	case "", registry.BackendFile:
		if c.Registry.Dir == "" {
			c.Registry.Dir = filepath.Join(c.DataDir, "registry")
		}
	case registry.BackendEtcd:
		if len(c.Registry.Endpoints) == 0 {
			return nil, cni.InvalidField(plugin, "registry.endpoints", "[]", "the etcd backend needs at least one endpoint")
		}
		if err := c.Registry.ValidateEtcd(); err != nil {
			if lenient {
				return nil, errNeverAdded
			}
			return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: registry.%v", plugin, err)
		}
	default:
		if lenient {
			return nil, errNeverAdded
		}
		return nil, cni.InvalidField(plugin, "registry.backend", fmt.Sprintf("%q", c.Registry.Backend), `must be "file" or "etcd"`)
	}
	if lenient {
		return c, nil
	}
	if c.DockerCompat {
		// Not built yet: a DNAT from 127.0.0.11 in the container's netns
		// needs a route with a non-loopback source for the reroute after
		// DNAT to succeed. Refuse rather than silently ignore it.
		return nil, cni.Errorf(cni.CodeUnsupportedField, "%s: dockerCompat true: not supported yet; remove it (containers get the gateway address as nameserver)", plugin)
	}
	for _, a := range c.RuntimeConfig.Aliases[c.Name] {
		if err := registry.ValidName(a); err != nil {
			return nil, cni.InvalidField(plugin, "runtimeConfig.aliases["+c.Name+"]", fmt.Sprintf("%q", a), err.Error())
		}
	}
	return c, nil
}

// parseUpstream accepts "ip" (port 53) or "ip:port" / "[ip6]:port".
func parseUpstream(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, errors.New(`must be an IP address or "ip:port"`)
	}
	return ap, nil
}

// openRegistry opens c's registry. For the etcd backend in a binary
// without the etcd client it does not return on success: the process
// becomes EtcdBinary, given the same command and stdin.
func openRegistry(c *NetConf, stdin []byte) (registry.Store, error) {
	var s registry.Store
	var err error
	if c.Registry.Backend == registry.BackendEtcd {
		if OpenEtcd == nil {
			return nil, execRegistry(stdin)
		}
		s, err = OpenEtcd(c.Registry)
	} else {
		s, err = registry.OpenFiles(c.Registry.Dir)
	}
	if err != nil {
		return nil, cni.Wrap(cni.CodeIOFailure, err, "%s: opening registry", plugin)
	}
	return s, nil
}

// registryTimeout bounds each registry call (etcd may be unreachable).
const registryTimeout = 10 * time.Second

// buildEntry collects what ADD registers from the args and prevResult.
func buildEntry(c *NetConf, args *skel.CmdArgs, prev *current.Result) (*registry.Entry, error) {
	e := &registry.Entry{
		Network: c.Name, ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns, Host: hostname(),
		DNS:     registry.DNSConfig{Domain: c.DomainName, Internal: c.Internal},
		Created: time.Now().UTC(),
	}
	for _, u := range c.upstreams {
		e.DNS.Upstreams = append(e.DNS.Upstreams, u.String())
	}
	names, err := registry.ContainerNames(args.Args, args.ContainerID)
	if err != nil {
		return nil, cni.Errorf(cni.CodeInvalidEnv, "%s: %v", plugin, err)
	}
	e.Names = names
	e.Aliases = append(e.Aliases, c.RuntimeConfig.Aliases[c.Name]...)

	for _, ipc := range prev.IPs {
		if ipc.Interface != nil && *ipc.Interface >= 0 && *ipc.Interface < len(prev.Interfaces) {
			// Only addresses of the container's own interfaces name it.
			if prev.Interfaces[*ipc.Interface].Sandbox == "" {
				continue
			}
		}
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		ones, _ := ipc.Address.Mask.Size()
		e.IPs = append(e.IPs, netip.PrefixFrom(a.Unmap(), ones))
		if g, ok := netip.AddrFromSlice(ipc.Gateway); ok && ipc.Gateway != nil && !slices.Contains(e.Gateways, g.Unmap()) {
			e.Gateways = append(e.Gateways, g.Unmap())
		}
		if ipc.Interface != nil && *ipc.Interface < len(prev.Interfaces) && e.MAC == "" {
			e.MAC = prev.Interfaces[*ipc.Interface].Mac
		}
	}
	if len(e.IPs) == 0 {
		return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: prevResult has no container IP address: chain dnsname after a plugin that assigns one (bridge with ipam)", plugin)
	}
	if len(e.Gateways) == 0 {
		return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: prevResult has no gateway address to serve DNS on: set isGateway on the bridge", plugin)
	}
	return e, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	tr := steptrace.Start(plugin + " ADD")
	defer tr.Done()
	c, err := loadConf(args.StdinData, false)
	if err != nil {
		return err
	}
	prev, err := cni.NeedPrevResult(plugin, &c.NetConf)
	if err != nil {
		return err
	}
	if err := cni.SafeContainerID(args.ContainerID); err != nil {
		return cni.Errorf(cni.CodeInvalidEnv, "%s: %v", plugin, err)
	}
	if err := link.ValidName(args.IfName); err != nil {
		return cni.Errorf(cni.CodeInvalidEnv, "%s: interface name %q: %v", plugin, args.IfName, err)
	}
	// The attachment is also the registry's key (a path component, with
	// "@" between container ID and interface name).
	if err := registry.ValidKey(c.Name, args.ContainerID, args.IfName); err != nil {
		return cni.Errorf(cni.CodeInvalidEnv, "%s: %v", plugin, err)
	}
	e, err := buildEntry(c, args, prev)
	if err != nil {
		return err
	}
	tr.Mark("conf")
	store, err := openRegistry(c, args.StdinData)
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	tr.Mark("open")

	if err := store.Put(ctx, e); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: registering %s", plugin, args.ContainerID)
	}
	tr.Mark("put")
	crashpoint.Hit("dnsname.add.registered")
	committed := false
	defer func() {
		if committed {
			return
		}
		// Undo: forget the entry, and tell a running sidecar (which exits if
		// that was its last name).
		cni.Undone(plugin, "unregistering", store.Delete(context.Background(), e.Network, e.ContainerID, e.IfName))
		cni.Undone(plugin, "telling the dns server", c.client(store).Notify(sidecar.Del(e.Network, registry.EntryName(e.ContainerID, e.IfName)), false))
	}()
	if err := c.client(store).Notify(c.put(e), true); err != nil {
		return cni.Wrap(cni.CodeTryAgain, err, "%s: dns server", plugin)
	}
	tr.Mark("notify")
	crashpoint.Hit("dnsname.add.notified")

	res := prev
	var servers []string
	for _, g := range e.Gateways {
		servers = append(servers, g.String())
	}
	res.DNS.Nameservers = prepend(res.DNS.Nameservers, servers...)
	res.DNS.Search = prepend(res.DNS.Search, c.DomainName)
	if res.DNS.Domain == "" {
		res.DNS.Domain = c.DomainName
	}
	// Containers joining this one (container-mode) report its DNS: the
	// attachment's entry gets the final result, this name server included.
	if err := registry.RecordAttachment(c.AttachmentsDir, c.Name, args, res); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: recording the attachment", plugin)
	}
	tr.Mark("record")
	committed = true
	return cni.Print(res, c.CNIVersion)
}

// prepend puts vals first, without duplicates.
func prepend(list []string, vals ...string) []string {
	out := append([]string(nil), vals...)
	for _, s := range list {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func cmdDel(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData, true)
	if errors.Is(err, errNeverAdded) {
		return nil
	}
	if err != nil {
		return err
	}
	if registry.ValidKey(c.Name, args.ContainerID, args.IfName) != nil {
		// Nothing can have been registered under such a key.
		return nil
	}
	store, err := openRegistry(c, args.StdinData)
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	if err := store.Delete(ctx, c.Name, args.ContainerID, args.IfName); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: unregistering %s", plugin, args.ContainerID)
	}
	crashpoint.Hit("dnsname.del.unregistered")
	if err := c.client(store).Notify(sidecar.Del(c.Name, registry.EntryName(args.ContainerID, args.IfName)), false); err != nil {
		return cni.Wrap(cni.CodeTryAgain, err, "%s: dns server", plugin)
	}
	if err := registry.ForgetAttachment(c.AttachmentsDir, c.Name, args); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: forgetting the attachment", plugin)
	}
	// dockerCompat is refused at ADD, so nothing of it is here to undo.
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData, false)
	if err != nil {
		return err
	}
	prev, err := cni.NeedPrevResult(plugin, &c.NetConf)
	if err != nil {
		return err
	}
	store, err := openRegistry(c, args.StdinData)
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	e, err := store.Get(ctx, c.Name, args.ContainerID, args.IfName)
	if errors.Is(err, registry.ErrNotFound) {
		return cni.Errorf(cni.CodeUnknownContainer, "%s: container %s (%s) is not registered on network %s", plugin, args.ContainerID, args.IfName, c.Name)
	}
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: registry", plugin)
	}
	want, err := buildEntry(c, args, prev)
	if err != nil {
		return err
	}
	if !slices.Equal(e.IPs, want.IPs) {
		return cni.Errorf(cni.CodeInvalidConfig, "%s: registered addresses %v differ from prevResult's %v", plugin, e.IPs, want.IPs)
	}
	return checkServer(e)
}

// checkServer asks the sidecar, over DNS on the gateway, for the entry's
// first name and expects the entry's addresses back.
func checkServer(e *registry.Entry) error {
	name := ""
	if len(e.Names) > 0 {
		name = e.Names[0]
	} else if len(e.Aliases) > 0 {
		name = e.Aliases[0]
	}
	if name == "" {
		return nil
	}
	cl := &dns.Client{Timeout: 2 * time.Second}
	for _, g := range e.Gateways {
		srv := netip.AddrPortFrom(g, 53).String()
		for _, ip := range e.IPs {
			qt := dns.TypeA
			if ip.Addr().Is6() {
				qt = dns.TypeAAAA
			}
			resp, _, err := cl.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name+"."+e.DNS.Domain), qt), srv)
			if err != nil {
				return cni.Errorf(cni.CodePluginNotAvailable, "%s: dns server %s: %v", plugin, srv, err)
			}
			found := false
			for _, rr := range resp.Answer {
				if strings.HasSuffix(rr.String(), "\t"+ip.Addr().String()) {
					found = true
				}
			}
			if !found {
				return cni.Errorf(cni.CodeLimitedConnectivity, "%s: dns server %s answers %s for %s, want %s", plugin, srv, dns.RcodeToString[resp.Rcode], name, ip.Addr())
			}
		}
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData, false)
	if err != nil {
		return err
	}
	var gc struct {
		ValidAttachments []types.GCAttachment `json:"cni.dev/valid-attachments"`
	}
	if err := cni.Decode(plugin, args.StdinData, &gc); err != nil {
		return err
	}
	valid := cni.ValidSet(gc.ValidAttachments)
	store, err := openRegistry(c, args.StdinData)
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	entries, err := store.List(ctx, c.Name)
	if err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: gc", plugin)
	}
	removed := 0
	for _, e := range entries {
		if valid[e.Key()] {
			continue
		}
		if err := store.Delete(ctx, e.Network, e.ContainerID, e.IfName); err != nil {
			return cni.Wrap(cni.CodeIOFailure, err, "%s: gc", plugin)
		}
		removed++
	}
	if removed > 0 {
		req, err := c.loadNetwork(ctx, store, c.Name)
		if err != nil {
			return cni.Wrap(cni.CodeIOFailure, err, "%s: gc", plugin)
		}
		if err := c.client(store).Notify(req, false); err != nil {
			return cni.Wrap(cni.CodeTryAgain, err, "%s: gc: dns server", plugin)
		}
	}
	return nil
}

func cmdStatus(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData, false)
	if err != nil {
		return err
	}
	store, err := openRegistry(c, args.StdinData)
	if err != nil {
		return err // a CNI error naming the plugin already
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	if _, err := store.Networks(ctx); err != nil {
		return cni.Wrap(cni.CodePluginNotAvailable, err, "%s: registry", plugin)
	}
	if _, err := os.Stat(c.DataDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return cni.Errorf(cni.CodePluginNotAvailable, "%s: dataDir: %v", plugin, err)
	}
	return nil
}
