package overlay

// berth-overlayd: one per host, started by the plugin's first ADD (on
// internal/hostd) and gone with the host's last overlay container. For
// each overlay network with containers here it keeps this host's subnet
// lease alive in etcd, publishes the host's VTEP, and follows every other
// host's lease (a snapshot, then a watch from its revision) to program
// routes, neighbours and FDB entries. etcd trouble never removes an entry:
// peers go only when etcd says their lease is gone.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/hostd"
)

// retry is how long the daemon waits after etcd failed before trying
// again (snapshot, publish); short enough that a returning etcd is used at
// once, long enough not to spin.
const retry = 500 * time.Millisecond

// requestTimeout bounds one etcd request of the daemon: short, as a
// request that runs out of time also gets the client made anew (conn).
const requestTimeout = 2 * time.Second

// firstSync bounds how long adding a network waits for its first
// snapshot, so that the ADD that brings a host in returns with the other
// hosts reachable; etcd being down must not hold ADDs much longer.
const firstSync = 2 * time.Second

// Main is berth-overlayd's main; it returns the exit code.
func Main() int {
	var c Config
	logger, closeLog, err := hostd.Startup(ConfigEnv, Binary, "the daemon the vxlan-overlay plugin starts", &c, func() string { return c.LogFile })
	if err != nil {
		return 1
	}
	defer closeLog()
	d, err := newDaemon(c, logger, os.Stdin)
	if err != nil {
		logger.Print(err)
		hostd.Ready(err)
		return 1
	}
	logger.Printf("serving %d networks", len(d.nets))
	hostd.Ready(nil)
	d.daemon.Serve(d.handle, func() {
		d.mu.Lock()
		d.shutdown()
		d.mu.Unlock()
	})
	d.wg.Wait()
	logger.Print("exited")
	return 0
}

type daemon struct {
	cfg    Config
	log    *log.Logger
	daemon *hostd.Daemon
	h      *netlink.Handle

	mu      sync.Mutex
	nets    map[string]*network
	wg      sync.WaitGroup
	exiting bool
}

// network is one overlay network the daemon follows.
type network struct {
	n      Network
	users  map[string]bool
	cancel context.CancelFunc
	// kick asks the network's loops to republish this host's record and
	// reprogram peers (the VXLAN device may have been made anew).
	kick   chan struct{}
	synced chan struct{} // closed after the first reconcile from etcd
}

func newDaemon(c Config, logger *log.Logger, state io.Reader) (*daemon, error) {
	d := &daemon{cfg: c, log: logger, nets: map[string]*network{}}
	var err error
	if d.h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	if d.daemon, err = hostd.Lock(c.dir(), logger); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(state)
	for {
		var req Request
		if err := dec.Decode(&req); err == io.EOF {
			break
		} else if err != nil {
			d.shutdown()
			return nil, fmt.Errorf("reading attachments from stdin: %w", err)
		}
		d.mu.Lock()
		wait := d.apply(req)
		d.mu.Unlock()
		d.waitSynced(wait)
	}
	if err := d.daemon.Listen(); err != nil {
		d.shutdown()
		return nil, err
	}
	return d, nil
}

func (d *daemon) handle(line []byte) error {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return fmt.Errorf("bad request: %w", err)
	}
	d.mu.Lock()
	if d.exiting {
		d.mu.Unlock()
		return hostd.ErrExiting
	}
	wait := d.apply(req)
	if len(d.nets) == 0 {
		// The host's last overlay container is gone: nothing to serve.
		// Leases are left to expire (not revoked), so a container added
		// soon gets the same subnet back without a claim.
		d.log.Print("no attachments left: exiting")
		d.shutdown()
	}
	d.mu.Unlock()
	d.waitSynced(wait)
	return nil
}

// apply changes the set of users; called with d.mu held. It returns a
// channel to wait on (outside the lock) for a new network's first sync.
func (d *daemon) apply(req Request) <-chan struct{} {
	switch req.Op {
	case OpAdd:
		nw := d.nets[req.Network.Name]
		if nw == nil {
			nw = d.start(req.Network)
		} else {
			select {
			case nw.kick <- struct{}{}:
			default:
			}
		}
		nw.users[req.Key] = true
		return nw.synced
	case OpDel:
		nw := d.nets[req.Network.Name]
		if nw == nil {
			return nil
		}
		delete(nw.users, req.Key)
		if len(nw.users) == 0 {
			d.log.Printf("%s: no attachments left", nw.n.Name)
			nw.cancel()
			delete(d.nets, req.Network.Name)
		}
	default:
		d.log.Printf("unknown op %q", req.Op)
	}
	return nil
}

func (d *daemon) waitSynced(ch <-chan struct{}) {
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-time.After(firstSync):
	}
}

// shutdown stops every network; with d.mu held.
func (d *daemon) shutdown() {
	d.exiting = true
	for name, nw := range d.nets {
		nw.cancel()
		delete(d.nets, name)
	}
	d.daemon.Shutdown()
}

// start begins following a network; with d.mu held.
func (d *daemon) start(n Network) *network {
	ctx, cancel := context.WithCancel(context.Background())
	nw := &network{n: n, users: map[string]bool{}, cancel: cancel, kick: make(chan struct{}, 1), synced: make(chan struct{})}
	d.nets[n.Name] = nw
	if n.Store.Type != StoreEtcd {
		close(nw.synced)
		return nw
	}
	cn := newConn(&n)
	if _, _, err := cn.get(); err != nil {
		d.log.Printf("%s: %v", n.Name, err)
		close(nw.synced)
		return nw
	}
	d.log.Printf("%s: following vni %d in etcd %v", n.Name, n.VNI, n.Store.Endpoints)
	republish := make(chan struct{}, 1)
	resync := make(chan struct{}, 1)
	// One kick feeds both loops.
	d.wg.Add(3)
	go func() {
		defer d.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-nw.kick:
				for _, c := range []chan struct{}{republish, resync} {
					select {
					case c <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	go func() {
		defer d.wg.Done()
		d.keepLease(ctx, &nw.n, cn, republish)
	}()
	go func() {
		defer d.wg.Done()
		defer cn.close()
		d.follow(ctx, &nw.n, cn, nw.synced, resync)
	}()
	return nw
}

// wait returns false when ctx ended during d.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// self is this host's record as it is now: the lease file's subnet and
// host, the VXLAN device's MAC and underlay address (the device may have
// been made anew since the lease was claimed).
func (d *daemon) self(n *Network) (*Lease, error) {
	l, err := ReadLease(n.LeaseFile)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return nil, fmt.Errorf("no lease file %s", n.LeaseFile)
	}
	if dev, err := d.h.LinkByName(n.Device); err == nil {
		if vx, ok := dev.(*netlink.Vxlan); ok {
			l.VTEPMAC = vx.HardwareAddr.String()
			if a, ok := netip.AddrFromSlice(vx.SrcAddr); ok {
				l.Underlay = a.Unmap()
			}
		}
	}
	return l, nil
}

// keepLease keeps this host's record in etcd under a live lease: publish
// (taking a new lease when etcd lost ours), then keep it alive until the
// keep-alive ends (etcd away past the TTL, or the lease revoked) or a kick
// asks to republish. Failures are logged and retried; they never touch
// the kernel.
func (d *daemon) keepLease(ctx context.Context, n *Network, cn *conn, republish <-chan struct{}) {
	failing := false
	var published netip.Addr
	for ctx.Err() == nil {
		l, err := d.self(n)
		var cli *clientv3.Client
		gen := 0
		if err == nil {
			if published.IsValid() && l.Underlay != published {
				// The underlay address changed: the client's connection
				// left from the old one and is dead.
				_, g, _ := cn.get()
				cn.reset(g)
			}
			cli, gen, err = cn.get()
		}
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, requestTimeout)
			var id int64
			id, err = Publish(pctx, cli, n, l)
			cancel()
			if stalled(err) {
				cn.reset(gen)
			}
			if err == nil {
				published = l.Underlay
			}
			if err == nil && id != l.LeaseID {
				d.log.Printf("%s: subnet %s published under lease %x (vtep %s at %s)", n.Name, l.Subnet, id, l.VTEPMAC, l.Underlay)
				l.LeaseID = id
				if werr := d.saveLeaseID(n, id); werr != nil {
					d.log.Printf("%s: %v", n.Name, werr)
				}
			}
		}
		if err != nil {
			if !failing && ctx.Err() == nil {
				d.log.Printf("%s: publishing this host's lease: %v (retrying)", n.Name, err)
			}
			failing = true
			if !wait(ctx, retry) {
				return
			}
			continue
		}
		if failing {
			d.log.Printf("%s: lease published again", n.Name)
		}
		failing = false
		kctx, kcancel := context.WithCancel(ctx)
		ch, err := cli.KeepAlive(kctx, clientv3.LeaseID(l.LeaseID))
		if err != nil {
			kcancel()
			continue
		}
		began := time.Now()
		alive, kicked := true, false
		for alive {
			select {
			case _, ok := <-ch:
				alive = ok
			case <-republish:
				alive, kicked = false, true
			}
		}
		kcancel()
		if !kicked && time.Since(began) < retry && !wait(ctx, retry) {
			// A keep-alive that ends at once (etcd refusing it) must not
			// turn this loop into a spin.
			return
		}
	}
}

// saveLeaseID records a new lease ID in the lease file, under the lease
// lock the plugin claims with.
func (d *daemon) saveLeaseID(n *Network, id int64) error {
	unlock, err := LockLease(n.LeaseFile)
	if err != nil {
		return err
	}
	defer unlock()
	l, err := ReadLease(n.LeaseFile)
	if err != nil || l == nil {
		return err
	}
	l.LeaseID = id
	return WriteLease(n.LeaseFile, l)
}

// follow keeps the kernel's peers equal to etcd's leases: a snapshot, then
// the watch from its revision; when the watch ends (a compaction passed
// our revision, etcd lost its leader) a fresh snapshot. While etcd is
// unreachable, the kernel keeps what it has.
func (d *daemon) follow(ctx context.Context, n *Network, cn *conn, synced chan struct{}, resync <-chan struct{}) {
	var once sync.Once
	failing := false
	for ctx.Err() == nil {
		self, _ := ReadLease(n.LeaseFile)
		cli, gen, err := cn.get()
		var resp *clientv3.GetResponse
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, requestTimeout)
			resp, err = cli.Get(sctx, n.keyPrefix(), clientv3.WithPrefix())
			cancel()
			if stalled(err) {
				cn.reset(gen)
			}
		}
		if err != nil {
			if !failing && ctx.Err() == nil {
				d.log.Printf("%s: etcd snapshot: %v (keeping the peers programmed; retrying)", n.Name, err)
			}
			failing = true
			if !wait(ctx, retry) {
				return
			}
			continue
		}
		failing = false
		peers := map[netip.Prefix]Record{}
		for _, kv := range resp.Kvs {
			d.put(n, peers, self, kv.Key, kv.Value)
		}
		d.program(n, peers)
		once.Do(func() { close(synced) })
		rev := resp.Header.Revision
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := cli.Watch(wctx, n.keyPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	watch:
		for {
			select {
			case resp, ok := <-wch:
				if !ok {
					break watch
				}
				if err := resp.Err(); err != nil {
					if ctx.Err() == nil {
						d.log.Printf("%s: watch from revision %d: %v: resyncing from a snapshot", n.Name, rev, err)
					}
					break watch
				}
				for _, ev := range resp.Events {
					if ev.Type == clientv3.EventTypePut {
						d.put(n, peers, self, ev.Kv.Key, ev.Kv.Value)
					} else if p, ok := n.subnetOfKey(string(ev.Kv.Key)); ok {
						d.log.Printf("%s: host subnet %s released", n.Name, p)
						delete(peers, p)
					}
					rev = ev.Kv.ModRevision
				}
				d.program(n, peers)
			case <-resync:
				d.program(n, peers)
			}
		}
		wcancel()
		if ctx.Err() == nil && !wait(ctx, retry) {
			return
		}
	}
}

// put records one lease in peers unless it is this host's (or this
// host's subnet, held by another: a conflict the next claim resolves; a
// route through the tunnel would take the local bridge's place).
func (d *daemon) put(n *Network, peers map[netip.Prefix]Record, self *Lease, key, val []byte) {
	p, ok := n.subnetOfKey(string(key))
	if !ok {
		return
	}
	var r Record
	if err := json.Unmarshal(val, &r); err != nil {
		d.log.Printf("%s: %s: %v", n.Name, key, err)
		return
	}
	if self != nil && (r.HostID == self.HostID || p == self.Subnet) {
		if r.HostID != self.HostID {
			d.log.Printf("%s: host %s holds this host's subnet %s: not routed through the tunnel", n.Name, r.HostID, p)
		}
		delete(peers, p)
		return
	}
	if old, ok := peers[p]; !ok || old != r {
		d.log.Printf("%s: peer %s: host %s, vtep %s at %s", n.Name, p, r.HostID, r.VTEPMAC, r.Underlay)
	}
	peers[p] = r
}

func (d *daemon) program(n *Network, peers map[netip.Prefix]Record) {
	if err := reconcile(d.h, n, peers); err != nil {
		d.log.Printf("%s: %v", n.Name, err)
	}
}
