// Command dnsbench measures berth's DNS sidecar against aardvark-dns
// (Podman's server) and dnsmasq serving the same 1000 names, in the same
// run, with dnsperf: queries per second and p99 latency for registered
// names and for forwarded names, and the sidecar's resident memory.
//
// Everything runs in private namespaces made here (a "host" one holding
// the three servers and a fake upstream, a "client" one running dnsperf);
// nothing touches the machine's root namespace or its resolver. Needs root
// and `make build` (it runs bin/dnsname-sidecar).
//
//	go run ./hack/dnsbench [-bin ./bin] [-names 1000] [-seconds 5]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/miekg/dns"

	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/nameserver/sidecar"
)

const aardvark = "/usr/lib/podman/aardvark-dns"

var (
	binDir  = flag.String("bin", "bin", "directory with the built plugins (make build)")
	nNames  = flag.Int("names", 1000, "registered names")
	seconds = flag.Int("seconds", 5, "length of each throughput run")
	rate    = flag.Int("latency-qps", 2000, "query rate of the latency runs")
)

// Addresses in the private host namespace.
const (
	berthIP    = "10.90.0.1"
	clientIP   = "10.90.0.2"
	aardvarkIP = "10.90.0.3"
	dnsmasqIP  = "10.90.0.4"
	upstreamIP = "10.90.0.9"
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }
func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

func need() error {
	var missing []string
	for bin, pkg := range map[string]string{"dnsperf": "dnsperf", "dnsmasq": "dnsmasq-base", aardvark: "aardvark-dns"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("missing tools: apt-get install -y %s", strings.Join(missing, " "))
	}
	if _, err := os.Stat(filepath.Join(*binDir, sidecar.Binary)); err != nil {
		return fmt.Errorf("%s/"+sidecar.Binary+" not built: run make build (or pass -bin)", *binDir)
	}
	return nil
}

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func name(i int) string { return fmt.Sprintf("c%04d", i) }
func addr(i int) string { return fmt.Sprintf("10.90.%d.%d", 1+i/250, i%250+2) }

func run() error {
	if err := need(); err != nil {
		return err
	}
	var cl cleanups
	defer cl.run()
	tag := fmt.Sprintf("dnsbench%d", os.Getpid())
	host, client := tag+"h", tag+"c"
	for _, n := range []string{host, client} {
		if err := ip("netns", "add", n); err != nil {
			return err
		}
		cl.add(func() { _ = ip("netns", "del", n) })
		if err := ip("-n", n, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	if err := ip("link", "add", "bh0", "netns", host, "type", "veth", "peer", "name", "bc0", "netns", client); err != nil {
		return err
	}
	for _, a := range []string{berthIP, aardvarkIP, dnsmasqIP, upstreamIP} {
		if err := ip("-n", host, "addr", "add", a+"/16", "dev", "bh0"); err != nil {
			return err
		}
	}
	if err := ip("-n", client, "addr", "add", clientIP+"/16", "dev", "bc0"); err != nil {
		return err
	}
	for _, a := range [][]string{{host, "bh0"}, {client, "bc0"}} {
		if err := ip("-n", a[0], "link", "set", a[1], "up"); err != nil {
			return err
		}
	}
	// aardvark-dns reads the upstream from resolv.conf; `ip netns exec`
	// mounts this one over /etc/resolv.conf for processes in host.
	etcDir := filepath.Join("/etc/netns", host)
	if err := os.MkdirAll(etcDir, 0o755); err != nil {
		return err
	}
	cl.add(func() { os.RemoveAll(etcDir) })
	if err := os.WriteFile(filepath.Join(etcDir, "resolv.conf"), []byte("nameserver "+upstreamIP+"\n"), 0o644); err != nil {
		return err
	}
	hostNS, err := ns.GetNS("/run/netns/" + host)
	if err != nil {
		return err
	}
	defer hostNS.Close()
	stop, err := fakeUpstream(hostNS)
	if err != nil {
		return err
	}
	cl.add(stop)

	work, err := os.MkdirTemp("", "dnsbench-")
	if err != nil {
		return err
	}
	cl.add(func() { os.RemoveAll(work) })

	sidecarPID, err := startBerth(&cl, host, work)
	if err != nil {
		return fmt.Errorf("berth: %w", err)
	}
	if err := startAardvark(&cl, host, work); err != nil {
		return fmt.Errorf("aardvark-dns: %w", err)
	}
	if err := startDnsmasq(&cl, host, work); err != nil {
		return fmt.Errorf("dnsmasq: %w", err)
	}
	clientNS, err := ns.GetNS("/run/netns/" + client)
	if err != nil {
		return err
	}
	defer clientNS.Close()
	for _, s := range []string{berthIP, aardvarkIP, dnsmasqIP} {
		if err := waitAnswer(clientNS, s, name(7)+".dns.podman."); err != nil {
			return fmt.Errorf("%s never answered: %w", s, err)
		}
	}

	regFile, fwdFile := filepath.Join(work, "registered.txt"), filepath.Join(work, "forwarded.txt")
	var reg, fwd strings.Builder
	for i := range *nNames {
		fmt.Fprintf(&reg, "%s.dns.podman A\n", name(i))
		fmt.Fprintf(&fwd, "f%04d.example.test A\n", i)
	}
	if err := os.WriteFile(regFile, []byte(reg.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(fwdFile, []byte(fwd.String()), 0o644); err != nil {
		return err
	}

	fmt.Printf("dnsbench: %d names, %ds throughput runs (dnsperf -c 8 -q 200), latency runs at %d qps\n", *nNames, *seconds, *rate)
	fmt.Printf("%-12s %-10s %12s %12s %12s\n", "server", "names", "qps", "p50 ms", "p99 ms")
	for _, kind := range []struct{ label, file string }{{"registered", regFile}, {"forwarded", fwdFile}} {
		for _, s := range []struct{ label, ip string }{{"berth", berthIP}, {"aardvark", aardvarkIP}, {"dnsmasq", dnsmasqIP}} {
			qps, err := throughput(client, s.ip, kind.file)
			if err != nil {
				return err
			}
			p50, p99, err := latency(client, s.ip, kind.file)
			if err != nil {
				return err
			}
			fmt.Printf("%-12s %-10s %12.0f %12.3f %12.3f\n", s.label, kind.label, qps, p50*1000, p99*1000)
		}
	}
	if rss, err := vmRSS(sidecarPID, "VmRSS:"); err == nil {
		anon, _ := vmRSS(sidecarPID, "RssAnon:")
		file, _ := vmRSS(sidecarPID, "RssFile:")
		fmt.Printf("berth sidecar resident memory with %d names: %.1f MB (anon %.1f, file %.1f)\n", *nNames, float64(rss)/1024, float64(anon)/1024, float64(file)/1024)
	}
	fmt.Println("note: dnsmasq caches forwarded answers (the others do not), so its forwarded figures measure its cache")
	return nil
}

// fakeUpstream answers every *.example.test A query, in the host namespace.
func fakeUpstream(hostNS ns.NetNS) (func(), error) {
	var pc net.PacketConn
	if err := hostNS.Do(func(ns.NetNS) (err error) {
		pc, err = net.ListenPacket("udp4", upstreamIP+":53")
		return err
	}); err != nil {
		return nil, err
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP("203.0.113.7")})
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	return func() { _ = srv.Shutdown() }, nil
}

// startBerth starts the real sidecar (bin/dnsname-sidecar) in the host
// namespace with the names streamed on its stdin, as the dnsname plugin
// does with its registry's contents.
func startBerth(cl *cleanups, host, work string) (int, error) {
	dataDir := filepath.Join(work, "berth")
	n := nameserver.Network{Name: "bench", Domain: "dns.podman", Upstreams: []netip.AddrPort{netip.MustParseAddrPort(upstreamIP + ":53")}}
	recs := make([]nameserver.Record, 0, *nNames)
	for i := range *nNames {
		recs = append(recs, nameserver.Record{
			Key: fmt.Sprintf("id%04d@eth0", i), Names: []string{name(i)},
			Addrs: []netip.Prefix{netip.MustParsePrefix(addr(i) + "/16")}, Gateways: []netip.Addr{netip.MustParseAddr(berthIP)},
		})
	}
	state, err := json.Marshal(sidecar.Replace(n, recs))
	if err != nil {
		return 0, err
	}
	cfg, _ := json.Marshal(sidecar.Config{DataDir: dataDir, LogFile: filepath.Join(dataDir, "dnsname.log")})
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	bin, _ := filepath.Abs(filepath.Join(*binDir, sidecar.Binary))
	cmd := exec.Command("ip", "netns", "exec", host, bin)
	cmd.Env = append(os.Environ(), sidecar.ConfigEnv+"="+string(cfg))
	cmd.Stdin = bytes.NewReader(state)
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	w.Close()
	cl.add(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	msg, _ := io.ReadAll(r)
	if strings.TrimSpace(string(msg)) != "ok" {
		log, _ := os.ReadFile(filepath.Join(dataDir, "dnsname.log"))
		return 0, fmt.Errorf("sidecar did not start: %s\n%s", msg, log)
	}
	// ip netns exec execs the sidecar in place: same pid.
	return cmd.Process.Pid, nil
}

func startAardvark(cl *cleanups, host, work string) error {
	dir := filepath.Join(work, "aardvark")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(aardvarkIP + "\n")
	// aardvark answers only askers it knows: register the client too.
	fmt.Fprintf(&b, "client000000 %s  dnsperf\n", clientIP)
	for i := range *nNames {
		fmt.Fprintf(&b, "id%010d %s  %s\n", i, addr(i), name(i))
	}
	if err := os.WriteFile(filepath.Join(dir, "bench"), []byte(b.String()), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(work, "aardvark.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", host, aardvark, "--config", dir, "-p", "53", "run")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	cl.add(func() {
		// It may have daemonized: kill by its pid file as well.
		if b, err := os.ReadFile(filepath.Join(dir, "aardvark.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	return nil
}

func startDnsmasq(cl *cleanups, host, work string) error {
	hosts := filepath.Join(work, "dnsmasq.hosts")
	var b strings.Builder
	for i := range *nNames {
		fmt.Fprintf(&b, "%s %s %s.dns.podman\n", addr(i), name(i), name(i))
	}
	if err := os.WriteFile(hosts, []byte(b.String()), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", host, "dnsmasq", "-k", "--no-resolv", "--no-hosts", "--addn-hosts="+hosts,
		"--listen-address="+dnsmasqIP, "--bind-interfaces", "--server="+upstreamIP, "--port=53", "--user=root",
		"--pid-file=", "--log-facility=-", "--local-ttl=0")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	cl.add(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return nil
}

// waitAnswer asks server from the client namespace until it answers (the
// servers started by other programs give no readiness signal); bench
// code, not a plugin path.
func waitAnswer(clientNS ns.NetNS, server, qname string) error {
	var last error
	for range 50 {
		err := clientNS.Do(func(ns.NetNS) error {
			c := &dns.Client{Timeout: 200 * time.Millisecond}
			resp, _, err := c.Exchange(new(dns.Msg).SetQuestion(qname, dns.TypeA), server+":53")
			if err == nil && len(resp.Answer) == 0 {
				err = fmt.Errorf("%s: %s", qname, dns.RcodeToString[resp.Rcode])
			}
			return err
		})
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

var qpsRE = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)

func throughput(client, server, file string) (float64, error) {
	out, err := exec.Command("ip", "netns", "exec", client, "dnsperf", "-s", server, "-d", file,
		"-l", strconv.Itoa(*seconds), "-c", "8", "-q", "200", "-t", "2").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("dnsperf %s: %w: %s", server, err, out)
	}
	m := qpsRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("dnsperf %s: no qps in output:\n%s", server, out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// latency runs dnsperf -v at a fixed rate and returns p50 and p99 in
// seconds (timeouts count as the timeout).
func latency(client, server, file string) (p50, p99 float64, err error) {
	cmd := exec.Command("ip", "netns", "exec", client, "dnsperf", "-s", server, "-d", file,
		"-l", "3", "-Q", strconv.Itoa(*rate), "-t", "2", "-v")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	var lat []float64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != ">" {
			continue
		}
		if f[1] == "T" {
			lat = append(lat, 2)
			continue
		}
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			lat = append(lat, v)
		}
	}
	if err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("dnsperf -v %s: %w", server, err)
	}
	if len(lat) == 0 {
		return 0, 0, fmt.Errorf("dnsperf -v %s: no latencies", server)
	}
	sort.Float64s(lat)
	return lat[len(lat)*50/100], lat[len(lat)*99/100], nil
}

func vmRSS(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field) {
			f := strings.Fields(l)
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no %s", field)
}
