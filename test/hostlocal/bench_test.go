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

// BenchmarkBinaryADD times whole ADD invocations of the host-local binary
// (process start included), berth's and the reference v1.9.1's, on an empty
// store and on one already holding 10,000 reservations, and reports the
// median and 90th percentile. Run with -benchtime=200x for 200 ADDs:
//
//	go test -run XXX -bench BinaryADD -benchtime 200x ./test/hostlocal/
//
// Each plugin runs in a private host namespace, as in the other tests.
func BenchmarkBinaryADD(b *testing.B) {
	nstest.RequireRoot(b)
	bins := map[string]string{
		"berth":     filepath.Join(nstest.CNIPath(b), "host-local"),
		"reference": filepath.Join(buildReference(b), "host-local"),
	}
	for _, impl := range []string{"berth", "reference"} {
		for _, prefill := range []int{0, 10000} {
			b.Run(fmt.Sprintf("%s/%d-reserved", impl, prefill), func(b *testing.B) {
				host, ctr := nstest.NewNS(b, "host"), nstest.NewNS(b, "ctr")
				data := b.TempDir()
				conf := []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"bench","type":"host-local","ipam":{"type":"host-local","subnet":"10.0.0.0/8","dataDir":%q}}`, data))
				prefillStore(b, filepath.Join(data, "bench"), prefill)
				durations := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					cmd := exec.Command(bins[impl])
					cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=bench" + fmt.Sprint(i), "CNI_NETNS=" + ctr.Path, "CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(bins[impl])}
					cmd.Stdin = bytes.NewReader(conf)
					var out []byte
					var err error
					start := time.Now()
					err = host.Do(func(ns.NetNS) error {
						out, err = cmd.Output()
						return err
					})
					durations = append(durations, time.Since(start))
					if err != nil {
						b.Fatalf("ADD %d: %v: %s", i, err, out)
					}
				}
				b.StopTimer()
				slices.Sort(durations)
				b.ReportMetric(float64(durations[len(durations)/2].Microseconds())/1000, "median-ms")
				b.ReportMetric(float64(durations[len(durations)*9/10].Microseconds())/1000, "p90-ms")
			})
		}
	}
}

// prefillStore writes n reservations in the reference layout.
func prefillStore(t testing.TB, dir string, n int) {
	t.Helper()
	if n == 0 {
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
