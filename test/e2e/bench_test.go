package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
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

// reportDiff gives the median of a's and base's differences iteration by
// iteration (measured next to each other, so under about the same load):
// what a costs above base, e.g. the network's share above --network none.
// Call it before report, which sorts each variant's timings.
func (tm timings) reportDiff(b *testing.B, a, base string) {
	var ds []time.Duration
	for i := range tm[a] {
		ds = append(ds, tm[a][i]-tm[base][i])
	}
	if len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	b.ReportMetric(float64(ds[len(ds)/2])/1e6, a+"-minus-"+base+"-median-ms")
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
// `podman rm -f -t0`, so both ADD and DEL are in it (DEL by the rm or by
// the exit command it races with). BenchmarkPodmanRunRm is the attached
// `run --rm` on a user-defined network.
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
	tm.reportDiff(b, "berth", "none")
	tm.reportDiff(b, "reference", "none")
	tm.report(b)
}

// BenchmarkPodmanRunRm: `podman run --rm … true`, attached, on a
// user-defined network (`podman network create`: bridge, portmap,
// firewall, tuning and dnsname, Podman's chain), interleaved across four
// engines:
//   - berth: berth's binaries;
//   - reference: the reference v1.9.1, which has no dnsname; Podman leaves
//     dnsname out of the conflist when its plugin directory has none, so
//     this variant runs the other four (the conflists are logged);
//   - floor: floorPlugins, a no-op binary under each plugin's name: the
//     engine's own network work plus one process start per plugin call,
//     what no chain of separate binaries can go below;
//   - none: --network none (no CNI call at all).
//
// ADD is in podman run; DEL in conmon's exit command (`podman container
// cleanup --rm`), which podman run waits for. Podman also runs each
// plugin of every conflist with VERSION in both processes (it validates
// the configs as it loads them), so one container costs 20 plugin
// processes here. "empty": the container is alone on its network, so each
// run also sets up and tears down per-network state (berth's DNS sidecar,
// the network's firewall chains); "busy": a sleeping container stays on
// the network.
func BenchmarkPodmanRunRm(b *testing.B) {
	if os.Getenv(EnvE2E) != "1" {
		b.Skip("real-engine lane: BERTH_E2E=1 after hack/e2e/deps.sh")
	}
	dirs := map[string]string{
		"berth":     nstest.CNIPath(b),
		"reference": referencePlugins(b),
		"floor":     floorPlugins(b),
	}
	for _, network := range []string{"empty", "busy"} {
		b.Run(network, func(b *testing.B) {
			engines := map[string]*Podman{}
			for name, dir := range dirs {
				p := NewPodman(b, dir)
				p.Podman("network", "create", "bench")
				var types []string
				for _, pl := range p.Conflist("bench")["plugins"].([]any) {
					types = append(types, pl.(map[string]any)["type"].(string))
				}
				b.Logf("%s: %s", name, strings.Join(types, ","))
				if network == "busy" {
					p.Run("keeper", []string{"--network", "bench"}, "sleep", "100000")
				}
				engines[name] = p
			}
			run := func(p *Podman, network string) func() {
				return func() {
					p.Podman("run", "--rm", "--network", network, "--ulimit", "host", "--rootfs", p.Rootfs, "true")
				}
			}
			variants := []struct {
				name string
				run  func()
			}{
				{"berth", run(engines["berth"], "bench")},
				{"reference", run(engines["reference"], "bench")},
				{"floor", run(engines["floor"], "bench")},
				{"none", run(engines["berth"], "none")},
			}
			// Warm: the first run on a network creates its bridge.
			for _, v := range variants {
				v.run()
			}
			tm := timings{}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, v := range variants {
					tm.time(v.name, v.run)
				}
			}
			b.StopTimer()
			for _, v := range []string{"berth", "reference", "floor"} {
				tm.reportDiff(b, v, "none")
			}
			tm.reportDiff(b, "berth", "floor")
			tm.report(b)
		})
	}
}

// floorPlugins builds testdata/floorplugin, as berth's binaries are built
// (static, stripped), under the name of each plugin of Podman's chain.
func floorPlugins(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "bridge")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./testdata/floorplugin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building the floor plugin: %v: %s", err, out)
	}
	for _, name := range []string{"portmap", "firewall", "tuning", "dnsname"} {
		if err := os.Link(bin, filepath.Join(dir, name)); err != nil {
			b.Fatal(err)
		}
	}
	return dir
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
	tm.reportDiff(b, "reference", "berth")
	tm.report(b)
}
