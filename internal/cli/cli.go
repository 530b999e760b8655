// Package cli is the berth command: the view Docker users get from
// `docker network ls/inspect`, `docker ps`, `docker port` and
// `docker network prune`, for networks that CNI plugins (berth's) made.
// Reading needs only read access to the config and state files (the kernel
// cross-check and the nftables ports need CAP_NET_ADMIN and
// CAP_SYS_ADMIN; without them attachments show as "unknown"). Every
// command acts on the caller's network namespace.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/berthnet/berth/pkg/inspect"
	"github.com/berthnet/berth/pkg/registry"
)

// Exit codes, documented in the help text so scripts can rely on them.
const (
	ExitOK       = 0
	ExitError    = 1 // a state or config file could not be read, the kernel refused
	ExitUsage    = 2 // bad command line
	ExitNotFound = 3 // no such network or container
	ExitPartial  = 4 // prune/gc: some actions failed (the others were done)
)

const exitHelp = `Exit codes:
  0  success (for prune and gc without --force: the plan was printed)
  1  error: a config or state file could not be read, the kernel refused a change
  2  usage: unknown command or flag, missing argument
  3  not found: no such network or container
  4  partial: prune or gc could not do every action (the others were done)`

// cmdError carries an exit code with a message.
type cmdError struct {
	code int
	err  error
}

func (e *cmdError) Error() string { return e.err.Error() }
func (e *cmdError) Unwrap() error { return e.err }

func usageErr(format string, a ...any) error {
	return &cmdError{ExitUsage, fmt.Errorf(format, a...)}
}

func notFound(err error) error { return &cmdError{ExitNotFound, err} }

// env is one invocation's streams.
type env struct {
	stdout, stderr io.Writer
}

type command struct {
	name, summary string
	run           func(e *env, args []string) error
}

func commands() []command {
	return []command{
		{"network ls", "list the networks of the CNI config directory", networkLs},
		{"network inspect", "show a network: config, IPAM ranges and usage, attachments", networkInspect},
		{"network prune", "remove what berth left for networks with no live attachment", networkPrune},
		{"ps", "list attachments across networks", ps},
		{"port", "list a container's published ports (like docker port)", port},
		{"gc", "DEL the stale attachments (their netns is gone) of every network", gc},
	}
}

const mainHelp = `berth: see and manage what berth's CNI plugins attached.

Usage:
  berth network ls [flags]
  berth network inspect [flags] NETWORK...
  berth network prune [--force] [flags]
  berth ps [flags]
  berth port [flags] CONTAINER [PORT[/PROTO]]
  berth gc [--force] [flags]

Run "berth COMMAND --help" for a command's flags.

Every command reads the CNI config directory (--conf-dir, default
/etc/cni/net.d, libcni's lookup rules) and berth's state: the attachments
registry, the IPAM store and the dnsname registry, where each network's
conflist puts them (attachmentsDir, ipam.dataDir, dnsname dataDir) or the
plugins' defaults; --attachments-dir, --ipam-dir and --dns-dir override.
The kernel is asked in the caller's network namespace.

`

// Main runs the command line args (without the program name) and returns
// the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, mainHelp)
		printCommands(stdout)
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, exitHelp)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	name, rest := args[0], args[1:]
	if name == "network" {
		if len(rest) == 0 || rest[0] == "-h" || rest[0] == "--help" {
			fmt.Fprint(stdout, "Usage: berth network ls|inspect|prune [flags]\n\n")
			printCommands(stdout)
			if len(rest) == 0 {
				return ExitUsage
			}
			return ExitOK
		}
		name, rest = "network "+rest[0], rest[1:]
	}
	for _, c := range commands() {
		if c.name == name {
			return exitCode(e, c.run(e, rest))
		}
	}
	fmt.Fprintf(stderr, "berth: unknown command %q (see berth --help)\n", name)
	return ExitUsage
}

func printCommands(w io.Writer) {
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
}

func exitCode(e *env, err error) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	fmt.Fprintf(e.stderr, "berth: %v\n", err)
	var ce *cmdError
	if errors.As(err, &ce) {
		return ce.code
	}
	if errors.Is(err, inspect.ErrNoNetwork) || errors.Is(err, registry.ErrNotFound) {
		return ExitNotFound
	}
	return ExitError
}

// common are the flags every command takes.
type common struct {
	confDir        string
	attachmentsDir string
	ipamDir        string
	dnsDir         string
}

func (c *common) options() inspect.Options {
	return inspect.Options{AttachmentsDir: c.attachmentsDir, IPAMDir: c.ipamDir, DNSDir: c.dnsDir}
}

// newFlags makes a command's flag set with the common flags and a help
// text that ends with the exit codes.
func newFlags(e *env, usage, about string) (*flag.FlagSet, *common) {
	fs := flag.NewFlagSet(usage, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	c := &common{}
	fs.StringVar(&c.confDir, "conf-dir", envOr("BERTH_CONF_DIR", inspect.DefaultConfDir), "CNI network config `dir` (env BERTH_CONF_DIR)")
	fs.StringVar(&c.attachmentsDir, "attachments-dir", "", "attachments registry `dir` (default: the conflist's attachmentsDir, else "+registry.DefaultAttachmentsDir+")")
	fs.StringVar(&c.ipamDir, "ipam-dir", "", "IPAM store `dir` (default: the conflist's ipam.dataDir, else /var/lib/cni/networks)")
	fs.StringVar(&c.dnsDir, "dns-dir", "", "dnsname registry `dir` (default: the conflist's dnsname dataDir/registry, else "+inspect.DefaultDNSDir+"/registry)")
	fs.Usage = func() {
		w := e.stdout
		fmt.Fprintf(w, "Usage: berth %s\n\n%s\n\nFlags:\n", usage, about)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(e.stderr)
		fmt.Fprintln(w)
		fmt.Fprintln(w, exitHelp)
	}
	return fs, c
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// parse parses flags given anywhere among the arguments (Docker's CLI
// accepts `inspect NET --json`) and returns the positional ones. A flag
// error is a usage error; --help is flag.ErrHelp (exit 0).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &cmdError{ExitUsage, err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func joinOr(ss []string, none string) string {
	if len(ss) == 0 {
		return none
	}
	return strings.Join(ss, ",")
}
