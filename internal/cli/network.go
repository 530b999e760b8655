package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/inspect"
	"github.com/berthnet/berth/pkg/registry"
)

// output is the --json / --format choice of a listing command.
type output struct {
	json   bool
	format string
}

// flags registers --json and --format; example is a template for the
// command's items, shown in its help.
func (o *output) flags(fs interface {
	BoolVar(*bool, string, bool, string)
	StringVar(*string, string, string, string)
}, example string) {
	fs.BoolVar(&o.json, "json", false, "print JSON (stable field names) instead of text")
	fs.StringVar(&o.format, "format", "", "print each item with a Go `template`, e.g. '"+example+"' (functions: json, join)")
}

// write prints items as JSON (one array), with the template (once per
// item), or returns false for the command's text.
func (o *output) write(w io.Writer, items any, each []any) (bool, error) {
	switch {
	case o.json && o.format != "":
		return true, usageErr("--json and --format: choose one")
	case o.json:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return true, enc.Encode(items)
	case o.format != "":
		t, err := template.New("format").Funcs(template.FuncMap{
			"json": func(v any) (string, error) {
				b, err := json.Marshal(v)
				return string(b), err
			},
			"join": func(ss []string, sep string) string { return strings.Join(ss, sep) },
		}).Parse(o.format)
		if err != nil {
			return true, usageErr("--format: %v", err)
		}
		for _, it := range each {
			if err := t.Execute(w, it); err != nil {
				return true, fmt.Errorf("--format: %w", err)
			}
			fmt.Fprintln(w)
		}
		return true, nil
	}
	return false, nil
}

// loadAll inspects every network of the config dir, reading nftables
// once. Files that do not load are warned about on stderr.
func loadAll(e *env, c *common) ([]*inspect.Network, error) {
	var out []*inspect.Network
	known := map[string]bool{}
	dirs := map[string]bool{}
	confs, pubs, err := inspectEach(e, c, func(_ *inspect.Conf, n *inspect.Network) {
		out = append(out, n)
		known[n.Name] = true
		dirs[n.StateDirs.Attachments] = true
	})
	if err != nil {
		return nil, err
	}
	// The registries the configs use; the default one also when there is
	// no config at all (every conflist removed).
	if len(confs) == 0 && c.attachmentsDir == "" {
		dirs[registry.DefaultAttachmentsDir] = true
	}
	if len(confs) == 0 && c.attachmentsDir != "" {
		dirs[c.attachmentsDir] = true
	}
	var list []string
	for d := range dirs {
		list = append(list, d)
	}
	sort.Strings(list)
	for _, n := range inspect.Orphans(list, known, c.options(), pubs) {
		fmt.Fprintf(e.stderr, "berth: warning: network %s has %d recorded attachments in %s but no config in %s\n",
			n.Name, len(n.Attachments), n.StateDirs.Attachments, c.confDir)
		out = append(out, n)
	}
	return out, nil
}

// inspectEach inspects every network of the config dir in turn, reading
// nftables once, and hands each to fn with its config. Files that do not
// load are warned about on stderr.
func inspectEach(e *env, c *common, fn func(*inspect.Conf, *inspect.Network)) ([]*inspect.Conf, []firewall.Published, error) {
	confs, errs := inspect.LoadConfs(c.confDir)
	for _, err := range errs {
		fmt.Fprintf(e.stderr, "berth: warning: %v\n", err)
	}
	pubs := publishedOrWarn(e, confs)
	for _, cf := range confs {
		n, err := inspect.Inspect(cf, c.options(), pubs)
		if err != nil {
			return nil, nil, fmt.Errorf("network %s: %w", cf.List.Name, err)
		}
		fn(cf, n)
	}
	return confs, pubs, nil
}

// publishedOrWarn reads the published ports; without privileges the view
// goes on without them (a warning says so).
func publishedOrWarn(e *env, confs []*inspect.Conf) []firewall.Published {
	pubs, err := inspect.Published(confs)
	if err != nil {
		fmt.Fprintf(e.stderr, "berth: warning: published ports not read (needs CAP_NET_ADMIN): %v\n", err)
		return []firewall.Published{}
	}
	if pubs == nil {
		pubs = []firewall.Published{}
	}
	return pubs
}

// lsRow is one line of `berth network ls`.
type lsRow struct {
	Name            string   `json:"name"`
	Driver          string   `json:"driver"`
	Subnets         []string `json:"subnets"`
	Gateways        []string `json:"gateways"`
	LiveAttachments int      `json:"liveAttachments"`
	Attachments     int      `json:"attachments"`
	File            string   `json:"file"`
	// Unreadable: the attachments registry could not be read; the
	// counts are unknown.
	Unreadable bool `json:"registryUnreadable,omitempty"`
}

func networkLs(e *env, args []string) error {
	fs, c := newFlags(e, "network ls [flags]",
		"Lists the networks of the config directory: name, driver (the first plugin's\ntype), subnets, gateways, live attachments (and recorded ones).")
	var o output
	o.flags(fs, `{{.Name}} {{join .Subnets ","}} {{.LiveAttachments}}`)
	quiet := fs.Bool("q", false, "print the names only")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("network ls takes no arguments, got %q", pos)
	}
	nets, err := loadAll(e, c)
	if err != nil {
		return err
	}
	rows := []lsRow{}
	var each []any
	for _, n := range nets {
		r := lsRow{Name: n.Name, Driver: n.Driver, Subnets: n.Subnets, Gateways: n.Gateways,
			LiveAttachments: n.LiveAttachments, Attachments: len(n.Attachments), File: n.File, Unreadable: n.RegistryUnreadable}
		rows = append(rows, r)
		each = append(each, r)
	}
	if done, err := o.write(e.stdout, rows, each); done {
		return err
	}
	if *quiet {
		for _, r := range rows {
			fmt.Fprintln(e.stdout, r.Name)
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDRIVER\tSUBNET\tGATEWAY\tLIVE\tRECORDED")
	for i, r := range rows {
		if r.File == "" {
			r.Driver = "(no config)"
		}
		live, rec := fmt.Sprint(r.LiveAttachments), fmt.Sprint(r.Attachments)
		if nets[i].RegistryUnreadable {
			live, rec = "?", "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Driver, joinOr(r.Subnets, "-"), joinOr(r.Gateways, "-"), live, rec)
	}
	return tw.Flush()
}

func networkInspect(e *env, args []string) error {
	fs, c := newFlags(e, "network inspect [flags] NETWORK...",
		"Shows each network: its config, IPAM ranges and usage, and every attachment\n(container ID, name, netns, ifname, IPs, MAC, host veth, DNS names and aliases,\npublished ports, firewall policy), cross-checked with the kernel: a record whose\nnetns or interface is gone is \"stale\".")
	var o output
	o.flags(fs, `{{.Name}}: {{range .Attachments}}{{.Name}} {{.IPs}} {{end}}`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr("network inspect: name at least one network")
	}
	var nets []*inspect.Network
	var each []any
	var confs []*inspect.Conf
	for _, name := range pos {
		cf, err := inspect.FindConf(c.confDir, name)
		if err != nil {
			return notFound(err)
		}
		confs = append(confs, cf)
	}
	pubs := publishedOrWarn(e, confs)
	for _, cf := range confs {
		n, err := inspect.Inspect(cf, c.options(), pubs)
		if err != nil {
			return err
		}
		nets = append(nets, n)
		each = append(each, n)
	}
	if done, err := o.write(e.stdout, nets, each); done {
		return err
	}
	for i, n := range nets {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		writeNetwork(e.stdout, n)
	}
	return nil
}

// writeNetwork is inspect's text form.
func writeNetwork(w io.Writer, n *inspect.Network) {
	fmt.Fprintf(w, "Network %s\n", n.Name)
	fmt.Fprintf(w, "  Config:      %s (cniVersion %s)\n", n.File, n.CNIVersion)
	fmt.Fprintf(w, "  Driver:      %s (plugins: %s)\n", n.Driver, strings.Join(n.Plugins, ", "))
	if n.Bridge != "" {
		fmt.Fprintf(w, "  Bridge:      %s\n", n.Bridge)
	}
	fmt.Fprintf(w, "  Subnets:     %s\n", joinOr(n.Subnets, "-"))
	fmt.Fprintf(w, "  Gateways:    %s\n", joinOr(n.Gateways, "-"))
	pol := n.Firewall.IngressPolicy
	if pol == "" {
		pol = "none (no firewall plugin)"
	}
	fmt.Fprintf(w, "  Firewall:    masquerade %v, ingress policy %s, published ports %v\n", n.Firewall.Masquerade, pol, n.Firewall.Portmap)
	fmt.Fprintf(w, "  IPAM:        %s, store %s\n", orDash(n.IPAM.Type), n.StateDirs.IPAM)
	for _, r := range n.IPAM.Ranges {
		extra := ""
		if r.RangeStart != "" || r.RangeEnd != "" {
			extra = fmt.Sprintf(" range %s-%s", orDash(r.RangeStart), orDash(r.RangeEnd))
		}
		fmt.Fprintf(w, "    %s gateway %s%s: %d of %s addresses in use\n", r.Subnet, orDash(r.Gateway), extra, r.Used, orDash(r.Size))
	}
	for _, r := range n.IPAM.Reservations {
		fmt.Fprintf(w, "    reserved %s by %s/%s\n", r.IP, short(r.ContainerID), r.IfName)
	}
	fmt.Fprintf(w, "  Registry:    %s\n", n.StateDirs.Attachments)
	if n.StateDirs.DNS != "" {
		fmt.Fprintf(w, "  DNS names:   %s\n", n.StateDirs.DNS)
	}
	if n.RegistryUnreadable {
		fmt.Fprintln(w, "  Attachments: unknown (the registry could not be read)")
	} else {
		fmt.Fprintf(w, "  Attachments: %d live, %d recorded\n", n.LiveAttachments, len(n.Attachments))
	}
	for _, a := range n.Attachments {
		fmt.Fprintf(w, "  - %s (%s) %s\n", a.Name, a.ContainerID, a.IfName)
		state := a.State
		if a.Reason != "" {
			state += ": " + a.Reason
		}
		fmt.Fprintf(w, "      state:    %s\n", state)
		fmt.Fprintf(w, "      netns:    %s\n", a.Netns)
		fmt.Fprintf(w, "      ips:      %s\n", joinOr(a.IPs, "-"))
		fmt.Fprintf(w, "      mac:      %s\n", orDash(a.MAC))
		if a.HostVeth != "" {
			fmt.Fprintf(w, "      host:     %s\n", a.HostVeth)
		}
		if a.JoinedTo != "" {
			fmt.Fprintf(w, "      joined:   %s\n", a.JoinedTo)
		}
		fmt.Fprintf(w, "      names:    %s\n", joinOr(a.Names, "-"))
		if len(a.Aliases) > 0 {
			fmt.Fprintf(w, "      aliases:  %s\n", strings.Join(a.Aliases, ","))
		}
		for _, p := range a.Ports {
			fmt.Fprintf(w, "      port:     %s\n", p)
		}
	}
	for _, wn := range n.Warnings {
		fmt.Fprintf(w, "  Warning:     %s\n", wn)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// psRow is one attachment of `berth ps`.
type psRow struct {
	Network string `json:"network"`
	inspect.Attachment
}

func ps(e *env, args []string) error {
	fs, c := newFlags(e, "ps [flags]",
		"Lists every attachment of every network: container, name, network, interface,\naddresses, MAC, published ports and state (live, stale, unknown).")
	var o output
	o.flags(fs, `{{.Name}} {{.Network}} {{.State}} {{json .Ports}}`)
	liveOnly := fs.Bool("live", false, "only live attachments (default: stale and unknown ones too)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("ps takes no arguments, got %q", pos)
	}
	nets, err := loadAll(e, c)
	if err != nil {
		return err
	}
	rows := []psRow{}
	var each []any
	for _, n := range nets {
		for _, a := range n.Attachments {
			if *liveOnly && a.State != inspect.Live {
				continue
			}
			r := psRow{Network: n.Name, Attachment: a}
			rows = append(rows, r)
			each = append(each, r)
		}
	}
	if done, err := o.write(e.stdout, rows, each); done {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER ID\tNAME\tNETWORK\tIFACE\tIPS\tMAC\tPORTS\tSTATE")
	for _, r := range rows {
		var ports []string
		for _, p := range r.Ports {
			ports = append(ports, fmt.Sprintf("%s:%d->%d/%s", p.HostIP, p.HostPort, p.ContainerPort, p.Protocol))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", short(r.ContainerID), r.Name, r.Network, r.IfName,
			joinOr(r.IPs, "-"), orDash(r.MAC), joinOr(ports, "-"), r.State)
	}
	return tw.Flush()
}

func port(e *env, args []string) error {
	fs, c := newFlags(e, "port [flags] CONTAINER [PORT[/PROTO]]",
		"Lists a container's published ports as `docker port` does (\"80/tcp -> 0.0.0.0:3000\"),\nacross its networks; with PORT, prints only the host side(s) of that port.\nCONTAINER is an ID, a name or a unique ID prefix.")
	var o output
	o.flags(fs, `{{.HostIP}}:{{.HostPort}}`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageErr("port: want CONTAINER [PORT[/PROTO]]")
	}
	want := ""
	if len(pos) == 2 {
		want = pos[1]
		if !strings.Contains(want, "/") {
			want += "/tcp"
		}
	}
	// The container may be on networks with other registries: look in
	// every directory the configs name.
	confs, errs := inspect.LoadConfs(c.confDir)
	for _, err := range errs {
		fmt.Fprintf(e.stderr, "berth: warning: %v\n", err)
	}
	dirs := map[string]bool{}
	for _, cf := range confs {
		d := cf.AttachmentsDir
		if c.attachmentsDir != "" {
			d = c.attachmentsDir
		}
		dirs[d] = true
	}
	if len(dirs) == 0 {
		d := c.attachmentsDir
		if d == "" {
			d = registry.DefaultAttachmentsDir
		}
		dirs[d] = true
	}
	var found []*registry.Entry
	for d := range dirs {
		es, err := findIn(d, pos[0])
		if err != nil {
			return err
		}
		found = append(found, es...)
	}
	if len(found) == 0 {
		return notFound(fmt.Errorf("no such container: %s", pos[0]))
	}
	pubs, err := inspect.Published(confs)
	if err != nil {
		return fmt.Errorf("reading published ports (needs CAP_NET_ADMIN): %w", err)
	}
	ports := []inspect.Port{}
	var each []any
	for _, en := range found {
		for _, p := range inspect.PortsOf(pubs, en.Network, en.ContainerID, en.IfName) {
			if want != "" && fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol) != want {
				continue
			}
			ports = append(ports, p)
			each = append(each, p)
		}
	}
	if done, err := o.write(e.stdout, ports, each); done {
		return err
	}
	if want != "" && len(ports) == 0 {
		return notFound(fmt.Errorf("no public port '%s' published for %s", want, pos[0]))
	}
	for _, p := range ports {
		if want != "" {
			fmt.Fprintln(e.stdout, strings.TrimPrefix(p.String(), want+" -> "))
			continue
		}
		fmt.Fprintln(e.stdout, p)
	}
	return nil
}

// findIn resolves ref in one attachments registry (exact ID, name, unique
// ID prefix), read only: a missing registry holds nothing.
func findIn(dir, ref string) ([]*registry.Entry, error) {
	if !isDir(dir) {
		return nil, nil
	}
	a, err := registry.OpenAttachments(dir)
	if err != nil {
		return nil, err
	}
	es, err := a.Find(ctxBG(), ref)
	if err == registry.ErrNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, &cmdError{ExitNotFound, err}
	}
	return es, nil
}
