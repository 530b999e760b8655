// Command benchportmap measures the Docker-like chain with a published port
// (bridge + ipMasq + host-local + portmap, one mapping per container) for
// berth against the reference plugins v1.9.1, entirely inside private
// network namespaces it makes and removes (on every exit path, signals
// included):
//
//   - compare: N ADDs then N DELs, berth and reference interleaved, medians
//     and p90;
//   - scale: berth alone, N=1000 containers on one bridge, each with its
//     own host port: median of the first 100 ADDs against the last 100
//     (DEL likewise);
//   - parallel: 32 concurrent ADDs, 500 containers in all, for each
//     implementation: failures, duplicate IPs, throughput.
//
// Usage (root): go run ./hack/benchportmap [-mode all|compare|scale|parallel]
// [-n 100] [-scale 1000] [-workers 32] [-total 500] [-berth DIR] [-ref DIR]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
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

type opts struct {
	mode                     string
	n, scale, workers, total int
	berthDir, refDir         string
}

func main() {
	var o opts
	flag.StringVar(&o.mode, "mode", "all", "all, compare, scale or parallel")
	flag.IntVar(&o.n, "n", 100, "containers in compare mode")
	flag.IntVar(&o.scale, "scale", 1000, "containers in scale mode")
	flag.IntVar(&o.workers, "workers", 32, "concurrent ADDs in parallel mode")
	flag.IntVar(&o.total, "total", 500, "containers in parallel mode")
	flag.StringVar(&o.berthDir, "berth", os.Getenv("BERTH_CNI_PATH"), "directory of built berth plugins (default: build them)")
	flag.StringVar(&o.refDir, "ref", "", "directory of the reference plugins v1.9.1 (default: go install them)")
	flag.Parse()

	b := &bench{o: o}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := b.run(ctx)
	stop()
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchportmap:", err)
		os.Exit(1)
	}
}

type bench struct {
	o     opts
	mu    sync.Mutex
	nss   []*sandbox.NS
	temps []string
	seq   int
}

// newNS makes a namespace the cleanup will remove.
func (b *bench) newNS(label string) (*sandbox.NS, error) {
	b.mu.Lock()
	b.seq++
	name := fmt.Sprintf("bpm%d-%d-%s", os.Getpid(), b.seq, label)
	b.mu.Unlock()
	n, err := sandbox.NewNS(name)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.nss = append(b.nss, n)
	b.mu.Unlock()
	return n, nil
}

func (b *bench) tempDir() (string, error) {
	d, err := os.MkdirTemp("", "benchportmap-")
	if err == nil {
		b.temps = append(b.temps, d)
	}
	return d, err
}

func (b *bench) cleanup() {
	for _, n := range b.nss {
		if err := n.Delete(); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}
	for _, d := range b.temps {
		_ = os.RemoveAll(d)
	}
}

func (b *bench) run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	var err error
	if b.o.berthDir == "" {
		if b.o.berthDir, err = b.build(ctx, "go", "build", "-o", "DIR/", "./plugins/bridge", "./plugins/host-local", "./plugins/portmap"); err != nil {
			return err
		}
	}
	needRef := b.o.mode != "scale"
	if needRef && b.o.refDir == "" {
		if b.o.refDir, err = b.build(ctx, "go", "install",
			"github.com/containernetworking/plugins/plugins/main/bridge@v1.9.1",
			"github.com/containernetworking/plugins/plugins/ipam/host-local@v1.9.1",
			"github.com/containernetworking/plugins/plugins/meta/portmap@v1.9.1"); err != nil {
			return err
		}
	}
	steps := map[string][]func(context.Context) error{
		"compare":  {b.compare},
		"scale":    {b.scaleMode},
		"parallel": {b.parallel},
		"all":      {b.compare, b.scaleMode, b.parallel},
	}[b.o.mode]
	if steps == nil {
		return fmt.Errorf("-mode %q: must be all, compare, scale or parallel", b.o.mode)
	}
	for _, s := range steps {
		if err := s(ctx); err != nil {
			return err
		}
	}
	return nil
}

// build runs a go build/install into a temp dir ("DIR/" in args, or GOBIN).
func (b *bench) build(ctx context.Context, args ...string) (string, error) {
	dir, err := b.tempDir()
	if err != nil {
		return "", err
	}
	for i, a := range args {
		args[i] = strings.Replace(a, "DIR/", dir+"/", 1)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return dir, nil
}

// impl is one implementation under test, in its own private host
// namespace so the two never see each other's rules.
type impl struct {
	name string
	rt   *sandbox.Runtime
	list *libcni.NetworkConfigList
}

func (b *bench) newImpl(name, pluginDir, subnet string) (*impl, error) {
	host, err := b.newNS("host")
	if err != nil {
		return nil, err
	}
	state, err := b.tempDir()
	if err != nil {
		return nil, err
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "bench",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": "docker0", "isGateway": true, "isDefaultGateway": true,
				"ipMasq": true, "hairpinMode": true, "dataDir": filepath.Join(state, "bridge"),
				"ipam": map[string]any{"type": "host-local", "dataDir": filepath.Join(state, "networks"),
					"ranges": []any{[]any{map[string]any{"subnet": subnet}}}},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}, "snat": true},
		},
	}
	raw, _ := json.Marshal(conf)
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return nil, err
	}
	return &impl{name: name, rt: sandbox.NewRuntime(host, filepath.Join(state, "cache"), pluginDir), list: list}, nil
}

type ctr struct {
	ns *sandbox.NS
	rc *libcni.RuntimeConf
	ip string
}

func (b *bench) newCtr(i int) (*ctr, error) {
	n, err := b.newNS("c")
	if err != nil {
		return nil, err
	}
	rc := sandbox.Attachment(fmt.Sprintf("bench%05d", i), n, "eth0")
	rc.CapabilityArgs = map[string]any{"portMappings": []any{
		map[string]any{"hostPort": 10000 + i, "containerPort": 80, "protocol": "tcp"},
	}}
	return &ctr{ns: n, rc: rc}, nil
}

func (b *bench) dropCtr(c *ctr) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, n := range b.nss {
		if n == c.ns {
			b.nss = append(b.nss[:i], b.nss[i+1:]...)
			break
		}
	}
	_ = c.ns.Delete()
}

func (m *impl) add(ctx context.Context, c *ctr) (time.Duration, error) {
	start := time.Now()
	res, err := m.rt.Add(ctx, m.list, c.rc)
	d := time.Since(start)
	if err == nil && len(res.IPs) > 0 {
		c.ip = res.IPs[0].Address.IP.String()
	}
	return d, err
}

func (m *impl) del(ctx context.Context, c *ctr) (time.Duration, error) {
	start := time.Now()
	err := m.rt.Del(ctx, m.list, c.rc)
	return time.Since(start), err
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(q*float64(len(s)-1)+0.5)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func (b *bench) compare(ctx context.Context) error {
	berth, err := b.newImpl("berth", b.o.berthDir, "10.10.0.0/16")
	if err != nil {
		return err
	}
	ref, err := b.newImpl("reference", b.o.refDir, "10.10.0.0/16")
	if err != nil {
		return err
	}
	impls := []*impl{berth, ref}
	ctrs := make([][]*ctr, 2)
	adds, dels := make([][]time.Duration, 2), make([][]time.Duration, 2)
	for i := 0; i < b.o.n; i++ {
		for k, m := range impls {
			c, err := b.newCtr(i)
			if err != nil {
				return err
			}
			d, err := m.add(ctx, c)
			if err != nil {
				return fmt.Errorf("%s ADD #%d: %w", m.name, i, err)
			}
			ctrs[k] = append(ctrs[k], c)
			adds[k] = append(adds[k], d)
		}
	}
	for i := 0; i < b.o.n; i++ {
		for k, m := range impls {
			d, err := m.del(ctx, ctrs[k][i])
			if err != nil {
				return fmt.Errorf("%s DEL #%d: %w", m.name, i, err)
			}
			dels[k] = append(dels[k], d)
			b.dropCtr(ctrs[k][i])
		}
	}
	fmt.Printf("== compare: full chain (bridge+ipMasq+host-local+portmap, 1 mapping), N=%d, interleaved\n", b.o.n)
	for _, op := range []struct {
		name string
		ds   [][]time.Duration
	}{{"ADD", adds}, {"DEL", dels}} {
		for k, m := range impls {
			fmt.Printf("%s %-9s median %s  p90 %s\n", op.name, m.name, ms(quantile(op.ds[k], .5)), ms(quantile(op.ds[k], .9)))
		}
		fmt.Printf("%s median ratio berth/reference: %.3fx\n", op.name, float64(quantile(op.ds[0], .5))/float64(quantile(op.ds[1], .5)))
	}
	return nil
}

func (b *bench) scaleMode(ctx context.Context) error {
	m, err := b.newImpl("berth", b.o.berthDir, "10.20.0.0/16")
	if err != nil {
		return err
	}
	var ctrs []*ctr
	var adds, dels []time.Duration
	for i := 0; i < b.o.scale; i++ {
		c, err := b.newCtr(i)
		if err != nil {
			return err
		}
		d, err := m.add(ctx, c)
		if err != nil {
			return fmt.Errorf("ADD #%d: %w", i, err)
		}
		ctrs = append(ctrs, c)
		adds = append(adds, d)
	}
	for i, c := range ctrs {
		d, err := m.del(ctx, c)
		if err != nil {
			return fmt.Errorf("DEL #%d: %w", i, err)
		}
		dels = append(dels, d)
		b.dropCtr(c)
	}
	k := min(100, len(adds))
	fmt.Printf("== scale: berth, N=%d on one bridge, each with its own published port\n", b.o.scale)
	for _, op := range []struct {
		name string
		ds   []time.Duration
	}{{"ADD", adds}, {"DEL", dels}} {
		first, last := quantile(op.ds[:k], .5), quantile(op.ds[len(op.ds)-k:], .5)
		fmt.Printf("%s median first %d: %s  last %d: %s  ratio %.2fx\n", op.name, k, ms(first), k, ms(last), float64(last)/float64(first))
	}
	return nil
}

func (b *bench) parallel(ctx context.Context) error {
	fmt.Printf("== parallel: %d concurrent ADDs, %d containers in all\n", b.o.workers, b.o.total)
	for _, spec := range []struct{ name, dir, subnet string }{
		{"berth", b.o.berthDir, "10.30.0.0/16"}, {"reference", b.o.refDir, "10.40.0.0/16"},
	} {
		m, err := b.newImpl(spec.name, spec.dir, spec.subnet)
		if err != nil {
			return err
		}
		ctrs := make([]*ctr, b.o.total)
		for i := range ctrs {
			if ctrs[i], err = b.newCtr(i); err != nil {
				return err
			}
		}
		var failures []string
		var fmu sync.Mutex
		runAll := func(op func(context.Context, *ctr) (time.Duration, error)) time.Duration {
			jobs := make(chan *ctr)
			var wg sync.WaitGroup
			start := time.Now()
			for w := 0; w < b.o.workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for c := range jobs {
						if _, err := op(ctx, c); err != nil {
							fmu.Lock()
							failures = append(failures, fmt.Sprintf("%s: %v", c.rc.ContainerID, err))
							fmu.Unlock()
						}
					}
				}()
			}
			for _, c := range ctrs {
				jobs <- c
			}
			close(jobs)
			wg.Wait()
			return time.Since(start)
		}
		addTime := runAll(m.add)
		seen := map[string]string{}
		dups := 0
		for _, c := range ctrs {
			if c.ip == "" {
				continue
			}
			if other, ok := seen[c.ip]; ok {
				dups++
				fmt.Printf("duplicate %s: %s and %s\n", c.ip, other, c.rc.ContainerID)
			}
			seen[c.ip] = c.rc.ContainerID
		}
		addFailures := len(failures)
		delTime := runAll(m.del)
		fmt.Printf("%-9s ADD %d in %s (%.1f/s), failures %d, duplicate IPs %d; DEL in %s (%.1f/s), failures %d\n",
			spec.name, b.o.total, addTime.Round(time.Millisecond), float64(b.o.total)/addTime.Seconds(), addFailures, dups,
			delTime.Round(time.Millisecond), float64(b.o.total)/delTime.Seconds(), len(failures)-addFailures)
		for i, f := range failures {
			if i == 5 {
				fmt.Printf("  … %d more\n", len(failures)-5)
				break
			}
			fmt.Println("  failure:", f)
		}
		for _, c := range ctrs {
			b.dropCtr(c)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}
