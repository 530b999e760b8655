package e2e

import (
	"os"
	"sort"
	"testing"
	"time"

	"github.com/berthnet/berth/internal/nstest"
)

// referencePlugins returns the reference plugins v1.9.1 that Podman's and
// containerd's default conflists use: BERTH_REF_PATH if set (a `GOBIN=…
// go install …@v1.9.1` directory), else built now.
func referencePlugins(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("BERTH_REF_PATH"); p != "" {
		return p
	}
	return nstest.BuildReference(b, "main/bridge", "ipam/host-local", "meta/portmap", "meta/firewall", "meta/tuning", "main/loopback")
}

// timings collects durations per variant; the variants are measured
// interleaved, in the same run, so load on the machine hits them alike.
type timings map[string][]time.Duration

func (tm timings) time(name string, f func()) {
	start := time.Now()
	f()
	tm[name] = append(tm[name], time.Since(start))
}

// report gives each variant's median and mean in ms.
func (tm timings) report(b *testing.B) {
	for name, ds := range tm {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		b.ReportMetric(float64(ds[len(ds)/2])/1e6, name+"-median-ms")
		b.ReportMetric(float64(sum)/float64(len(ds))/1e6, name+"-mean-ms")
	}
}

// BenchmarkPodmanRun: a container's life on Podman's default network (the
// conflist Podman writes: bridge, portmap, firewall, tuning) with berth's
// binaries, with the reference v1.9.1, and with --network none (the
// engine's own floor), interleaved: `podman run -d … sleep` then
// `podman rm -f -t0`, so both ADD and DEL are in it. Not `podman run --rm
// … true`: attached runs here wait out conmon's 20 s exit timeout
// ("Exceeded conmon timeout waiting for container to exit"), whatever the
// network, which would bury the network's share.
func BenchmarkPodmanRun(b *testing.B) {
	if os.Getenv(EnvE2E) != "1" {
		b.Skip("real-engine lane: BERTH_E2E=1 after hack/e2e/deps.sh")
	}
	berth := NewPodman(b, nstest.CNIPath(b))
	ref := NewPodman(b, referencePlugins(b))
	run := func(p *Podman, network string) func() {
		return func() {
			id := p.Podman("run", "-d", "--network", network, "--ulimit", "host", "--rootfs", p.Rootfs, "sleep", "1000")
			p.Podman("rm", "-f", "-t0", id)
		}
	}
	// Warm: the first run creates the default network's bridge.
	run(berth, "podman")()
	run(ref, "podman")()
	tm := timings{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tm.time("berth", run(berth, "podman"))
		tm.time("reference", run(ref, "podman"))
		tm.time("none", run(berth, "none"))
	}
	b.StopTimer()
	tm.report(b)
}

// BenchmarkCRIPod: runp + stopp + rmp of a pod through containerd's CRI on
// the containerd example conflist, with berth and with the reference
// v1.9.1 as bin_dir, interleaved.
func BenchmarkCRIPod(b *testing.B) {
	if os.Getenv(EnvE2E) != "1" {
		b.Skip("real-engine lane: BERTH_E2E=1 after hack/e2e/deps.sh")
	}
	conflist := nstest.Example(b, "containerd-default.conflist")
	berth := NewContainerd(b, nstest.CNIPath(b), conflist)
	ref := NewContainerd(b, referencePlugins(b), conflist)
	cycle := func(c *Containerd) func() {
		sb := c.writeJSON("bench-pod.json", map[string]any{
			"metadata": map[string]any{"name": "bench", "namespace": "default", "uid": "bench-uid"},
			"linux":    map[string]any{},
		})
		return func() {
			id := c.Crictl("runp", sb)
			c.Crictl("stopp", id)
			c.Crictl("rmp", id)
		}
	}
	berthCycle, refCycle := cycle(berth), cycle(ref)
	berthCycle()
	refCycle()
	tm := timings{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tm.time("berth", berthCycle)
		tm.time("reference", refCycle)
	}
	b.StopTimer()
	tm.report(b)
}
