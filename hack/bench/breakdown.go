package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/berthnet/berth/internal/sandbox"
)

// timedExec is libcni's own exec (invoke.DefaultExec) with a stopwatch
// around each plugin process: libcni hands each plugin the previous
// result, so the time of one ExecPlugin call is that plugin's whole cost
// in the chain (its process start included; an IPAM plugin the reference
// bridge execs itself counts in the bridge's time).
type timedExec struct {
	invoke.DefaultExec
	mu sync.Mutex
	// by "<plugin> <COMMAND>"
	times map[string][]time.Duration
}

func newTimedExec() *timedExec {
	return &timedExec{
		DefaultExec: invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}},
		times:       map[string][]time.Duration{},
	}
}

func (e *timedExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	start := time.Now()
	out, err := e.DefaultExec.ExecPlugin(ctx, path, stdin, environ)
	d := time.Since(start)
	cmd := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			cmd = v
		}
	}
	if cmd == "ADD" || cmd == "DEL" {
		e.mu.Lock()
		k := filepath.Base(path) + " " + cmd
		e.times[k] = append(e.times[k], d)
		e.mu.Unlock()
	}
	return out, err
}

// floor is the cost of starting a Go process that does nothing: a no-op
// binary built by the bench, started once beside every measured
// container, so it sees the same load as the plugins.
type floor struct {
	bin   string
	times []time.Duration
}

func newFloor(dir string) (*floor, error) {
	src := filepath.Join(dir, "noop")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module noop\n\ngo 1.21\n"), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "noop-bin")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the no-op binary: %w: %s", err, out)
	}
	return &floor{bin: bin}, nil
}

// sample starts the no-op binary once, as libcni starts a plugin (stdin
// piped, stdout collected).
func (f *floor) sample() {
	start := time.Now()
	cmd := exec.Command(f.bin)
	cmd.Stdin = strings.NewReader("{}")
	if _, err := cmd.Output(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return
	}
	f.times = append(f.times, time.Since(start))
}

func (f *floor) median() time.Duration { return summarize(f.times).median }

// reportBreakdown prints each plugin's median per command, and what is
// left above the floor.
func (b *bench) reportBreakdown() {
	fl := time.Duration(0)
	if b.floor != nil && len(b.floor.times) > 0 {
		fl = b.floor.median()
		fmt.Printf("floor (no-op Go process start, same run, N=%d): median %v, p90 %v\n",
			len(b.floor.times), fl.Round(10*time.Microsecond), summarize(b.floor.times).p90.Round(10*time.Microsecond))
	}
	vf := time.Duration(0)
	if b.vethFloor != nil && len(b.vethFloor.times) > 0 {
		vf = summarize(b.vethFloor.times).median
		fmt.Printf("DEL floor (deleting one veth pair, one netlink request, same run, N=%d): median %v, p90 %v\n",
			len(b.vethFloor.times), vf.Round(10*time.Microsecond), summarize(b.vethFloor.times).p90.Round(10*time.Microsecond))
	}
	for _, im := range b.impls {
		if im.timer == nil || fl == 0 {
			continue
		}
		// The least a chain of these plugins could cost: one process
		// start each, and for DEL the veth's deletion on top.
		n := 0
		for _, p := range im.plugins {
			if len(im.timer.times[p+" ADD"]) > 0 {
				n++
			}
		}
		fmt.Printf("%-6s chain floor (%d process starts; DEL: + the veth deletion): ADD %v (median is %.2fx), DEL %v (median is %.2fx)\n",
			im.name, n, (time.Duration(n) * fl).Round(10*time.Microsecond), float64(summarize(im.add).median)/float64(time.Duration(n)*fl),
			(time.Duration(n)*fl + vf).Round(10*time.Microsecond), float64(summarize(im.del).median)/float64(time.Duration(n)*fl+vf))
	}
	for _, im := range b.impls {
		if im.timer == nil {
			continue
		}
		for _, cmd := range []string{"ADD", "DEL"} {
			fmt.Printf("%-6s %s per plugin (median; above floor):", im.name, cmd)
			for _, p := range im.plugins {
				d := im.timer.times[p+" "+cmd]
				if len(d) == 0 {
					continue
				}
				m := summarize(d).median
				fmt.Printf("  %s %v (+%v)", p, m.Round(10*time.Microsecond), (m - fl).Round(10*time.Microsecond))
				if len(d) >= 200 {
					// Which plugin grows with the number of containers.
					fmt.Printf(" [first100 %v, last100 %v]", summarize(d[:100]).median.Round(10*time.Microsecond), summarize(d[len(d)-100:]).median.Round(10*time.Microsecond))
				}
			}
			fmt.Println()
		}
	}
}

// floorSegment is the floor's median beside the first and the last 100
// containers of an operation (op "ADD": the samples of the ADD loop, "DEL":
// those of the DEL loop, n each).
func (b *bench) floorSegment(op string, n int) [2]time.Duration {
	if b.floor == nil || len(b.floor.times) < 2*n || n < 200 {
		return [2]time.Duration{}
	}
	t := b.floor.times[:n]
	if op == "DEL" {
		t = b.floor.times[n : 2*n]
	}
	return [2]time.Duration{summarize(t[:100]).median, summarize(t[n-100:]).median}
}

// vethFloor is what no DEL of a veth-based chain can go below: deleting one
// veth pair (one netlink request, no process start), which waits out an
// RCU grace period in the kernel. Sampled beside every DEL, between the
// bench's first host namespace and a scratch namespace of its own.
type vethFloor struct {
	host, peer *sandbox.NS
	hostH      *netlink.Handle
	times      []time.Duration
}

func newVethFloor(host *sandbox.NS, prefix string) (*vethFloor, error) {
	peer, err := sandbox.NewNS(prefix + "-vf")
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(host.Fd()))
	if err != nil {
		_ = peer.Delete()
		return nil, fmt.Errorf("netlink handle in %s: %w", host.Name, err)
	}
	return &vethFloor{host: host, peer: peer, hostH: h}, nil
}

// sample creates a veth pair (untimed) and times its deletion.
func (v *vethFloor) sample() {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "benchvf0"
	if err := v.hostH.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(v.peer.Fd())}); err != nil {
		fmt.Fprintln(os.Stderr, "veth floor:", err)
		return
	}
	l, err := v.hostH.LinkByName(attrs.Name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "veth floor:", err)
		return
	}
	start := time.Now()
	if err := v.hostH.LinkDel(l); err != nil {
		fmt.Fprintln(os.Stderr, "veth floor:", err)
		return
	}
	v.times = append(v.times, time.Since(start))
}

func (v *vethFloor) close() {
	v.hostH.Close()
	_ = v.peer.Delete()
}
