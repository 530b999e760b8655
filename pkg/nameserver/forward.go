package nameserver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Forwarder sends queries to upstream servers with failover. It never
// waits on one slow upstream: if the first has not answered after Stagger,
// the next one is asked too, and the first good answer wins. Upstreams that
// failed recently are tried last.
type Forwarder struct {
	// Timeout bounds a whole forwarded query; DefaultTimeout if zero.
	Timeout time.Duration
	// Stagger is how long an upstream gets before the next one is asked as
	// well; 300ms if zero.
	Stagger time.Duration

	mu     sync.Mutex
	failed map[netip.AddrPort]time.Time
}

func (f *Forwarder) timeout() time.Duration {
	if f.Timeout > 0 {
		return f.Timeout
	}
	return DefaultTimeout
}

func (f *Forwarder) stagger() time.Duration {
	if f.Stagger > 0 {
		return f.Stagger
	}
	return 300 * time.Millisecond
}

// penalty is how long a failure moves an upstream to the back of the line.
const penalty = 30 * time.Second

// order returns ups with the recently failed ones last, keeping the
// configured order otherwise.
func (f *Forwarder) order(ups []netip.AddrPort) []netip.AddrPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failed) == 0 {
		return ups
	}
	now := time.Now()
	out := append([]netip.AddrPort(nil), ups...)
	bad := func(u netip.AddrPort) bool {
		t, ok := f.failed[u]
		return ok && now.Sub(t) < penalty
	}
	sort.SliceStable(out, func(i, j int) bool { return !bad(out[i]) && bad(out[j]) })
	return out
}

func (f *Forwarder) mark(u netip.AddrPort, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok {
		delete(f.failed, u)
		return
	}
	if f.failed == nil {
		f.failed = map[netip.AddrPort]time.Time{}
	}
	f.failed[u] = time.Now()
}

// Exchange forwards req over proto ("udp" or "tcp") and returns the first
// usable answer. SERVFAIL and REFUSED count as failures and move on to the
// next upstream; NXDOMAIN is an answer.
func (f *Forwarder) Exchange(ctx context.Context, req *dns.Msg, ups []netip.AddrPort, proto string) (*dns.Msg, error) {
	if len(ups) == 0 {
		return nil, errors.New("no upstream servers")
	}
	ups = f.order(ups)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the attempts still running once one answered
	type result struct {
		up   netip.AddrPort
		resp *dns.Msg
		err  error
	}
	results := make(chan result, len(ups))
	c := &dns.Client{Net: proto, Timeout: f.timeout()}
	start := func(u netip.AddrPort) {
		go func() {
			resp, _, err := c.ExchangeContext(ctx, req.Copy(), u.String())
			if err == nil && (resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused) {
				err = fmt.Errorf("%s", dns.RcodeToString[resp.Rcode])
			}
			results <- result{u, resp, err}
		}()
	}
	next, running := 0, 0
	start(ups[next])
	next, running = 1, 1
	timer := time.NewTimer(f.stagger())
	defer timer.Stop()
	var errs []error
	for running > 0 {
		select {
		case r := <-results:
			running--
			if r.err == nil {
				f.mark(r.up, true)
				return r.resp, nil
			}
			if ctx.Err() == nil {
				f.mark(r.up, false)
			}
			errs = append(errs, fmt.Errorf("%s: %w", r.up, r.err))
			if next < len(ups) {
				start(ups[next])
				next++
				running++
				timer.Reset(f.stagger())
			}
		case <-timer.C:
			if next < len(ups) {
				start(ups[next])
				next++
				running++
				timer.Reset(f.stagger())
			}
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
			return nil, errors.Join(errs...)
		}
	}
	return nil, errors.Join(errs...)
}
