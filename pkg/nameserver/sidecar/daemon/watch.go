package daemon

// Names other hosts register: for a network whose registry is etcd, the
// sidecar follows the network's keys itself (etcdstore's Watch), so that a
// container started on another host resolves here without any local ADD,
// DEL or GC.
//
// Records are split by owner to keep the two sources from racing: local
// records (this host's containers) come only from the plugin, over the
// control socket, synchronously with ADD and DEL; remote ones come only
// from the watch, ordered by etcd revision.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berthnet/berth/internal/hostd"
	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/nameserver/sidecar"
	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/etcdstore"
)

type watch struct {
	network string
	cfg     *registry.Config
	// Guarded by server.mu.
	applied int64                        // etcd revision the remote records are at
	remote  map[string]nameserver.Record // by key
	net     nameserver.Network           // settings, as the last remote entry had them
}

// controlTimeout bounds a sync request's wait.
const controlTimeout = hostd.DefaultTimeout

// snapshotTimeout bounds one range read of a network.
const snapshotTimeout = 10 * time.Second

// follow starts watching network's keys unless already done; called with
// s.mu held. Remote records of the request that starts it (the plugin's
// load at startup) are the watch's initial state.
func (s *server) follow(n nameserver.Network, cfg *registry.Config, recs []nameserver.Record) *watch {
	if w := s.watches[n.Name]; w != nil {
		return w
	}
	w := &watch{
		network: n.Name, net: n, remote: map[string]nameserver.Record{},
		cfg: cfg,
	}
	for _, r := range recs {
		if r.Remote {
			w.remote[r.Key] = r
		}
	}
	s.watches[n.Name] = w
	s.wg.Add(1)
	go s.watchLoop(w)
	return w
}

// watchLoop takes a snapshot, then applies the watch's events, and starts
// over (with a growing delay between failed attempts) when etcd is away or
// cancels the watch (a compaction), until the sidecar exits.
func (s *server) watchLoop(w *watch) {
	defer s.wg.Done()
	const maxDelay = 10 * time.Second
	delay := 100 * time.Millisecond
	var src *etcdstore.Etcd
	defer func() {
		if src != nil {
			src.Close()
		}
	}()
	for {
		var err error
		if src == nil {
			src, err = etcdstore.OpenConfig(w.cfg)
		}
		if err == nil {
			err = s.resync(w, src)
		}
		if err == nil {
			delay = 100 * time.Millisecond
			s.mu.Lock()
			from := w.applied
			s.mu.Unlock()
			err = src.Watch(s.ctx, w.network, from, func(ev etcdstore.Event) { s.applyEvent(w, ev) })
		}
		if s.ctx.Err() != nil {
			return
		}
		s.log.Printf("etcd watch of %s: %v (again in %v)", w.network, err, delay)
		t := time.NewTimer(delay)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, maxDelay)
	}
}

// resync replaces the network's remote records with a fresh snapshot.
func (s *server) resync(w *watch, src *etcdstore.Etcd) error {
	ctx, cancel := context.WithTimeout(s.ctx, snapshotTimeout)
	defer cancel()
	entries, rev, err := src.Snapshot(ctx, w.network)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exiting || rev < w.applied {
		return nil // the watch is already further along
	}
	fresh := map[string]nameserver.Record{}
	for _, e := range entries {
		// A snapshot's entries come without their keys: only an entry's
		// own key can have held it.
		if err := sidecar.CheckRemote(e, w.network, registry.EntryName(e.ContainerID, e.IfName)); err != nil {
			s.log.Printf("etcd watch of %s: ignoring an entry: %v", w.network, err)
			continue
		}
		n, rec := sidecar.FromEntry(e, s.self)
		if rec.Remote {
			fresh[rec.Key] = rec
			w.net = n
		}
	}
	for k := range w.remote {
		if _, ok := fresh[k]; !ok {
			s.table.Remove(w.network, k)
		}
	}
	for _, rec := range fresh {
		s.table.Set(w.net, rec)
	}
	w.remote = fresh
	w.applied = rev
	s.progressed()
	return nil
}

func (s *server) applyEvent(w *watch, ev etcdstore.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exiting || ev.Revision <= w.applied {
		return
	}
	w.applied = ev.Revision
	s.progressed()
	if ev.Entry == nil {
		if _, ok := w.remote[ev.Key]; ok {
			delete(w.remote, ev.Key)
			s.table.Remove(w.network, ev.Key)
		}
		return
	}
	if err := sidecar.CheckRemote(ev.Entry, w.network, ev.Key); err != nil {
		s.log.Printf("etcd watch of %s: ignoring %s: %v", w.network, ev.Key, err)
		return
	}
	n, rec := sidecar.FromEntry(ev.Entry, s.self)
	if !rec.Remote {
		return // ours: the plugin told us already, synchronously
	}
	w.net = n
	w.remote[rec.Key] = rec
	s.table.Set(n, rec)
}

// waitApplied waits until network's watch has applied revision rev, or
// controlTimeout.
func (s *server) waitApplied(network string, rev int64) error {
	t := time.NewTimer(controlTimeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		w, progress := s.watches[network], s.progress
		done := w != nil && w.applied >= rev
		s.mu.Unlock()
		if w == nil {
			return fmt.Errorf("network %s has no etcd watch", network)
		}
		if done {
			return nil
		}
		select {
		case <-progress:
		case <-t.C:
			return fmt.Errorf("etcd watch of %s: revision %d not reached in %v", network, rev, controlTimeout)
		case <-s.ctx.Done():
			return errors.New("exiting")
		}
	}
}

// progressed wakes waitApplied; called with s.mu held.
func (s *server) progressed() {
	close(s.progress)
	s.progress = make(chan struct{})
}

// withRemote returns recs's local records plus the watch's remote ones: a
// replace from the plugin (GC) must not undo what the watch, which is
// ordered by etcd revision, has applied since the plugin's read.
func (w *watch) withRemote(recs []nameserver.Record) []nameserver.Record {
	out := make([]nameserver.Record, 0, len(recs)+len(w.remote))
	for _, r := range recs {
		if !r.Remote {
			out = append(out, r)
		}
	}
	for _, r := range w.remote {
		out = append(out, r)
	}
	return out
}
