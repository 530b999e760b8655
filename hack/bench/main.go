// Command bench measures ADD and DEL latency of a CNI chain through libcni,
// as containerd drives it, for N containers, in private network namespaces.
// Given -ref DIR (another set of CNI binaries, e.g. the reference plugins
// v1.9.1), it runs both interleaved in the same run and prints the ratio.
//
//	go run ./hack/bench -n 100 -ref /tmp/ref            # bridge + host-local (+ ipMasq)
//	go run ./hack/bench -n 100 -portmap -ref /tmp/ref   # the Docker-like chain with one published port
//	go run ./hack/bench -n 1000 -portmap                # scale: first 100 vs last 100
//	go run ./hack/bench -n 500 -parallel 32 -ref /tmp/ref
//	go run ./hack/bench -n 100 -join                   # container-mode: N joins of one attached target
//	go run ./hack/bench -n 100 -macvlan -ref /tmp/ref   # macvlan + host-local on a veth parent
//	go run ./hack/bench -n 50 -podman -ref /tmp/ref     # bridge+portmap+firewall+tuning+dnsname (ref: the first four)
//	go run ./hack/bench -n 50 -podman -lone -ref /tmp/ref  # each container alone on the network (podman run --rm)
//
// Every sequential run also prints the floor (a no-op Go binary started
// beside each container, same run) and each plugin's median alone (the
// time libcni spends in its process, the previous result handed in).
//
// The reference plugins: GOBIN=/tmp/ref go install
// github.com/containernetworking/plugins/plugins/{main/bridge,ipam/host-local,meta/portmap,meta/firewall,meta/tuning}@v1.9.1
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/sandbox"
)

func main() {
	n := flag.Int("n", 100, "containers per implementation")
	ref := flag.String("ref", "", "directory of other CNI binaries to compare with (same plugin names)")
	portmap := flag.Bool("portmap", false, "chain portmap with one published port per container")
	dynPorts := flag.Bool("dynamic-ports", false, "with -portmap: \"hostPort\": 0 (docker run -P), portmap chooses the port")
	masq := flag.Bool("masq", true, "bridge ipMasq")
	parallel := flag.Int("parallel", 1, "concurrent ADDs (then DELs); >1 reports throughput")
	join := flag.Bool("join", false, "container-mode: attach one target through the chain, then measure N containers joining it (berth only)")
	macvlan := flag.Bool("macvlan", false, "chain macvlan + host-local (on a veth parent in the bench's host namespace) instead of bridge")
	lone := flag.Bool("lone", false, "each container alone on its network: ADD then DEL before the next (podman run --rm on a network nobody else uses: the network's own state is built and removed every time)")
	podman := flag.Bool("podman", false, "Podman's chain: bridge + portmap + firewall + tuning + dnsname (plugins missing from a -ref dir are left out of its chain)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal(fmt.Errorf("needs root (network namespaces)"))
	}
	berth := os.Getenv("BERTH_CNI_PATH")
	if berth == "" {
		berth = "bin"
	}
	if *join && *ref != "" {
		fatal(fmt.Errorf("-join measures berth's container-mode, which the reference plugins lack: drop -ref"))
	}
	if *podman {
		*portmap = true
	}
	b := &bench{n: *n, lone: *lone, podman: *podman, portmap: *portmap, masq: *masq, dynPorts: *dynPorts, join: *join, macvlan: *macvlan, prefix: fmt.Sprintf("bb%d", os.Getpid()%100000)}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "interrupted: cleaning up")
		b.cleanup()
		os.Exit(130)
	}()
	err := b.run(berth, *ref, *parallel)
	b.cleanup()
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

type bench struct {
	n       int
	portmap bool
	// dynPorts publishes with "hostPort": 0.
	dynPorts bool
	masq     bool
	join     bool
	macvlan  bool
	podman   bool
	lone     bool
	prefix   string
	floor    *floor
	// vethFloor, for chains with a veth (not -join, not -macvlan).
	vethFloor *vethFloor

	mu    sync.Mutex
	impls []*impl
}

// impl is one set of binaries with its own host namespace, containers and
// state, so the two never share a bridge or a rule.
type impl struct {
	name   string
	dir    string
	state  string
	host   *sandbox.NS
	rt     *sandbox.Runtime
	list   *libcni.NetworkConfigList
	ctrs   []*sandbox.NS
	added  []bool
	add    []time.Duration
	del    []time.Duration
	ips    map[string]int
	failed int
	// timer times each plugin process; plugins is the chain's order.
	timer   *timedExec
	plugins []string

	// With -join: the target every container joins, attached through
	// chain; list is then the container-mode list.
	target *sandbox.NS
	chain  *libcni.NetworkConfigList
}

func (b *bench) run(berth, ref string, parallel int) error {
	dirs := [][2]string{{"berth", berth}}
	if ref != "" {
		dirs = append(dirs, [2]string{"ref", ref})
	}
	for _, d := range dirs {
		if err := b.newImpl(d[0], d[1]); err != nil {
			return err
		}
	}
	var err error
	if b.floor, err = newFloor(b.impls[0].state); err != nil {
		return err
	}
	if !b.join && !b.macvlan {
		if b.vethFloor, err = newVethFloor(b.impls[0].host, b.prefix); err != nil {
			return err
		}
	}
	switch {
	case b.join:
		fmt.Printf("container-mode joins of one target on bridge+host-local, N=%d, parallel=%d\n", b.n, parallel)
	case b.podman:
		for _, im := range b.impls {
			fmt.Printf("%s chain: %s, ", im.name, strings.Join(im.plugins, "+"))
		}
		fmt.Printf("N=%d, parallel=%d\n", b.n, parallel)
	case b.macvlan:
		fmt.Printf("chain: macvlan+host-local%s, N=%d, parallel=%d\n", map[bool]string{true: "+portmap", false: ""}[b.portmap], b.n, parallel)
	default:
		fmt.Printf("chain: bridge(ipMasq=%v)+host-local%s, N=%d, parallel=%d\n", b.masq, map[bool]string{true: "+portmap", false: ""}[b.portmap], b.n, parallel)
	}
	if parallel > 1 {
		return b.runParallel(parallel)
	}
	// Interleaved: container i of each implementation back to back, so
	// both see the same machine load. All ADDs, then all DELs; with -lone
	// each container's DEL right after its ADD.
	type phase struct {
		ops     []func(*impl, int) error
		deletes bool // the veth floor is sampled beside DELs
	}
	add := func(im *impl, i int) error { return im.doAdd(b, i) }
	del := func(im *impl, i int) error { return im.doDel(i) }
	phases := []phase{{ops: []func(*impl, int) error{add}}, {ops: []func(*impl, int) error{del}, deletes: true}}
	if b.lone {
		phases = []phase{{ops: []func(*impl, int) error{add, del}, deletes: true}}
	}
	for _, ph := range phases {
		for i := 0; i < b.n; i++ {
			for _, im := range b.impls {
				for _, op := range ph.ops {
					if err := op(im, i); err != nil {
						return err
					}
				}
			}
			b.floor.sample()
			if ph.deletes && b.vethFloor != nil {
				b.vethFloor.sample()
			}
		}
	}
	b.report()
	b.reportBreakdown()
	return nil
}

// newImpl sets up one implementation and registers it for cleanup before
// anything can fail half way.
func (b *bench) newImpl(name, dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	main := "bridge"
	if b.macvlan {
		main = "macvlan"
	}
	for _, p := range []string{main, "host-local"} {
		if _, err := os.Stat(filepath.Join(abs, p)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	state, err := os.MkdirTemp("", "berth-bench-"+name+"-")
	if err != nil {
		return err
	}
	im := &impl{name: name, dir: abs, state: state, ips: map[string]int{}, ctrs: make([]*sandbox.NS, b.n), added: make([]bool, b.n)}
	b.mu.Lock()
	b.impls = append(b.impls, im)
	b.mu.Unlock()
	if im.host, err = sandbox.NewNS(b.prefix + "-" + name); err != nil {
		return err
	}
	if b.macvlan {
		// The "physical" parent: a veth pair inside the bench's host
		// namespace.
		if out, err := im.host.Exec("sh", "-c", "ip link add eth0 type veth peer name eth0p && ip link set eth0 up && ip link set eth0p up"); err != nil {
			return fmt.Errorf("%s: parent: %w: %s", name, err, out)
		}
	}
	im.timer = newTimedExec()
	im.rt = &sandbox.Runtime{Host: im.host, CNI: libcni.NewCNIConfigWithCacheDir([]string{abs}, filepath.Join(state, "cache"), im.timer)}
	if im.list, err = b.conflist(state, abs); err != nil {
		return err
	}
	for _, p := range im.list.Plugins {
		im.plugins = append(im.plugins, p.Network.Type)
	}
	if b.join {
		if err := im.attachTarget(b); err != nil {
			return err
		}
	}
	for i := range im.ctrs {
		if im.ctrs[i], err = sandbox.NewNS(fmt.Sprintf("%s-%s-%d", b.prefix, name, i)); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) conflist(state, dir string) (*libcni.NetworkConfigList, error) {
	ipam := map[string]any{
		"type": "host-local", "dataDir": filepath.Join(state, "networks"),
		"ranges": []any{[]any{map[string]any{"subnet": "10.200.0.0/16"}}},
	}
	plugins := []map[string]any{{
		"type": "bridge", "bridge": "bench0", "isGateway": true, "isDefaultGateway": true, "ipMasq": b.masq,
		// The attachments registry under the run's state, never the
		// machine's /run/cni (the reference ignores the field).
		"attachmentsDir": filepath.Join(state, "attachments"),
		"ipam":           ipam,
	}}
	if b.macvlan {
		plugins = []map[string]any{{"type": "macvlan", "master": "eth0", "mode": "bridge", "dataDir": filepath.Join(state, "macvlan"), "attachmentsDir": filepath.Join(state, "attachments"), "ipam": ipam}}
	}
	if b.portmap {
		// dataDir: chosen ports (hostPort 0) under the run's state.
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true},
			"dataDir": filepath.Join(state, "portmap")})
	}
	if b.podman {
		// As Podman 4 writes them (firewall's backend left to its
		// default); each plugin's state under the run's directory.
		for _, p := range []map[string]any{
			{"type": "firewall"},
			{"type": "tuning", "dataDir": filepath.Join(state, "tuning")},
			{"type": "dnsname", "domainName": "dns.bench", "upstreams": []string{"192.0.2.53"}, "capabilities": map[string]bool{"aliases": true},
				"dataDir": filepath.Join(state, "dnsname"), "attachmentsDir": filepath.Join(state, "attachments")},
		} {
			if _, err := os.Stat(filepath.Join(dir, p["type"].(string))); err == nil {
				plugins = append(plugins, p)
			}
		}
	}
	raw, err := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "bench", "plugins": plugins})
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromBytes(raw)
}

// attachTarget attaches the container every -join container joins, and
// switches the measured list to container-mode.
func (im *impl) attachTarget(b *bench) error {
	var err error
	if im.target, err = sandbox.NewNS(fmt.Sprintf("%s-%s-target", b.prefix, im.name)); err != nil {
		return err
	}
	im.chain = im.list
	if _, err := im.rt.Add(context.Background(), im.chain, im.targetRC()); err != nil {
		return fmt.Errorf("%s: attaching the target: %w", im.name, err)
	}
	raw, err := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "bench-join", "plugins": []map[string]any{{
		"type": "container-mode", "attachmentsDir": filepath.Join(im.state, "attachments"),
	}}})
	if err != nil {
		return err
	}
	im.list, err = libcni.ConfListFromBytes(raw)
	return err
}

func (im *impl) targetRC() *libcni.RuntimeConf {
	rc := sandbox.Attachment("bench-"+im.name+"-target", im.target, "eth0")
	rc.Args = [][2]string{{"K8S_POD_NAME", "target"}}
	return rc
}

func (im *impl) rc(b *bench, i int) *libcni.RuntimeConf {
	rc := sandbox.Attachment(fmt.Sprintf("bench-%s-%d", im.name, i), im.ctrs[i], "eth0")
	// DEL (called with an empty bench) needs no target.
	if b.join {
		rc.Args = [][2]string{{"CONTAINER", "target"}}
	}
	if b.portmap {
		hostPort := 20000 + i
		if b.dynPorts {
			hostPort = 0
		}
		rc.CapabilityArgs = map[string]any{"portMappings": []map[string]any{
			{"hostPort": hostPort, "containerPort": 80, "protocol": "tcp"},
		}}
	}
	return rc
}

func (im *impl) doAdd(b *bench, i int) error {
	start := time.Now()
	res, err := im.rt.Add(context.Background(), im.list, im.rc(b, i))
	d := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s ADD %d: %w", im.name, i, err)
	}
	im.added[i] = true
	im.add = append(im.add, d)
	if len(res.IPs) > 0 {
		im.ips[res.IPs[0].Address.IP.String()]++
	}
	return nil
}

func (im *impl) doDel(i int) error {
	start := time.Now()
	err := im.rt.Del(context.Background(), im.list, im.rc(&bench{}, i))
	d := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s DEL %d: %w", im.name, i, err)
	}
	im.added[i] = false
	im.del = append(im.del, d)
	return nil
}

// runParallel starts `workers` ADDs at a time per implementation (one
// implementation after the other), then DELs, and reports throughput,
// failures and duplicate addresses.
func (b *bench) runParallel(workers int) error {
	for _, im := range b.impls {
		for _, phase := range []string{"ADD", "DEL"} {
			jobs := make(chan int)
			var wg sync.WaitGroup
			var mu sync.Mutex
			start := time.Now()
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range jobs {
						t0 := time.Now()
						var err error
						if phase == "ADD" {
							r, e := im.rt.Add(context.Background(), im.list, im.rc(b, i))
							err = e
							mu.Lock()
							if err == nil {
								im.added[i] = true
								im.add = append(im.add, time.Since(t0))
								im.ips[r.IPs[0].Address.IP.String()]++
							}
							mu.Unlock()
						} else {
							err = im.rt.Del(context.Background(), im.list, im.rc(b, i))
							mu.Lock()
							if err == nil {
								im.added[i] = false
								im.del = append(im.del, time.Since(t0))
							}
							mu.Unlock()
						}
						if err != nil {
							mu.Lock()
							im.failed++
							mu.Unlock()
							fmt.Fprintf(os.Stderr, "%s %s %d: %v\n", im.name, phase, i, err)
						}
					}
				}()
			}
			for i := 0; i < b.n; i++ {
				jobs <- i
			}
			close(jobs)
			wg.Wait()
			el := time.Since(start)
			fmt.Printf("%-6s %s x%d with %d workers: %v total, %.1f/s\n", im.name, phase, b.n, workers, el.Round(time.Millisecond), float64(b.n)/el.Seconds())
		}
		dups := 0
		for _, c := range im.ips {
			if c > 1 {
				dups++
			}
		}
		if b.join {
			// Every join reports the target's address: no duplicates to count.
			fmt.Printf("%-6s failures: %d\n", im.name, im.failed)
			continue
		}
		fmt.Printf("%-6s failures: %d, duplicate IPs: %d\n", im.name, im.failed, dups)
	}
	b.report()
	return nil
}

func (b *bench) report() {
	fmt.Printf("%-6s %-4s %10s %10s %10s", "impl", "op", "median", "p90", "mean")
	if b.n >= 200 {
		fmt.Printf(" %12s %12s %7s", "first100 med", "last100 med", "last/1st")
	}
	fmt.Println()
	med := map[string]time.Duration{}
	for _, im := range b.impls {
		for _, op := range []struct {
			name string
			d    []time.Duration
		}{{"ADD", im.add}, {"DEL", im.del}} {
			s := summarize(op.d)
			med[im.name+op.name] = s.median
			fmt.Printf("%-6s %-4s %10v %10v %10v", im.name, op.name, s.median.Round(10*time.Microsecond), s.p90.Round(10*time.Microsecond), s.mean.Round(10*time.Microsecond))
			if b.n >= 200 && len(op.d) >= 200 {
				first := summarize(op.d[:100]).median
				last := summarize(op.d[len(op.d)-100:]).median
				fmt.Printf(" %12v %12v %7.2f", first.Round(10*time.Microsecond), last.Round(10*time.Microsecond), float64(last)/float64(first))
				// The same above the floor of those containers (a
				// no-op process start sampled beside each), so a load
				// that changes during the run shows as such.
				if fl := b.floorSegment(op.name, len(op.d)); fl[0] > 0 && first > fl[0] {
					fmt.Printf("  over floor: %v/%v -> %v/%v, last/1st %.2f", first.Round(10*time.Microsecond), fl[0].Round(10*time.Microsecond),
						last.Round(10*time.Microsecond), fl[1].Round(10*time.Microsecond), float64(last-fl[1])/float64(first-fl[0]))
				}
			}
			fmt.Println()
		}
	}
	if len(b.impls) == 2 {
		for _, op := range []string{"ADD", "DEL"} {
			if r := med["ref"+op]; r > 0 {
				fmt.Printf("ratio berth/ref %s median: %.3f\n", op, float64(med["berth"+op])/float64(r))
			}
		}
	}
}

type summary struct{ median, p90, mean time.Duration }

func summarize(d []time.Duration) summary {
	if len(d) == 0 {
		return summary{}
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	return summary{median: s[len(s)/2], p90: s[len(s)*9/10], mean: sum / time.Duration(len(s))}
}

// cleanup DELs what is still attached, then removes every namespace and
// state directory.
func (b *bench) cleanup() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.vethFloor != nil {
		b.vethFloor.close()
		b.vethFloor = nil
	}
	for _, im := range b.impls {
		for i, added := range im.added {
			if added && im.rt != nil {
				_ = im.rt.Del(context.Background(), im.list, im.rc(b, i))
			}
		}
		if im.target != nil {
			_ = im.rt.Del(context.Background(), im.chain, im.targetRC())
			_ = im.target.Delete()
		}
		for _, c := range im.ctrs {
			if c != nil {
				_ = c.Delete()
			}
		}
		if im.host != nil {
			_ = im.host.Delete()
		}
		os.RemoveAll(im.state)
	}
	b.impls = nil
}
