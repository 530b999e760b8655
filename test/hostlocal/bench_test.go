package hostlocal

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
)

// BenchmarkBinaryADD times whole invocations of the host-local binary
// (process start included), berth's and the reference v1.9.1's alternately
// so that both see the same machine load: VERSION (process start, the
// floor), ADD on an empty store and ADD on a store already holding 10,000
// reservations. It reports the median and 90th percentile of each. Run with
// -benchtime=200x for 200 invocations of each:
//
//	go test -run XXX -bench BinaryADD -benchtime 200x ./test/hostlocal/
//
// Each plugin runs in a private host namespace, as in the other tests.
func BenchmarkBinaryADD(b *testing.B) {
	nstest.RequireRoot(b)
	impls := []struct{ name, bin string }{
		{"berth", filepath.Join(nstest.CNIPath(b), "host-local")},
		{"ref", filepath.Join(nstest.BuildReference(b, "ipam/host-local"), "host-local")},
	}
	for _, sc := range []struct {
		name, command string
		prefill       int
	}{{"VERSION", "VERSION", 0}, {"ADD-empty", "ADD", 0}, {"ADD-10000-reserved", "ADD", 10000}} {
		b.Run(sc.name, func(b *testing.B) {
			host, ctr := nstest.NewNS(b, "host"), nstest.NewNS(b, "ctr")
			confs := make([][]byte, len(impls))
			for k := range impls {
				data := b.TempDir()
				confs[k] = []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"bench","type":"host-local","ipam":{"type":"host-local","subnet":"10.0.0.0/8","dataDir":%q}}`, data))
				prefillStore(b, filepath.Join(data, "bench"), sc.prefill)
			}
			durations := make([][]time.Duration, len(impls))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for k, impl := range impls {
					cmd := exec.Command(impl.bin)
					cmd.Env = []string{"CNI_COMMAND=" + sc.command, "CNI_CONTAINERID=bench" + fmt.Sprint(i), "CNI_NETNS=" + ctr.Path, "CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(impl.bin)}
					cmd.Stdin = bytes.NewReader(confs[k])
					var out []byte
					start := time.Now()
					err := host.Do(func(ns.NetNS) error {
						var err error
						out, err = cmd.Output()
						return err
					})
					durations[k] = append(durations[k], time.Since(start))
					if err != nil {
						b.Fatalf("%s %s %d: %v: %s", impl.name, sc.command, i, err, out)
					}
				}
			}
			b.StopTimer()
			for k, impl := range impls {
				d := durations[k]
				slices.Sort(d)
				b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, impl.name+"-median-ms")
				b.ReportMetric(float64(d[len(d)*9/10].Microseconds())/1000, impl.name+"-p90-ms")
			}
		})
	}
}

// prefillStore writes n reservations in the reference layout.
func prefillStore(t testing.TB, dir string, n int) {
	t.Helper()
	if n <= 0 {
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("10.200.%d.%d", i/250, i%250+1)
		if err := os.WriteFile(filepath.Join(dir, ip), []byte(fmt.Sprintf("seed%d\r\neth0", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "last_reserved_ip.0"), []byte("10.0.0.1"), 0o600); err != nil {
		t.Fatal(err)
	}
}
