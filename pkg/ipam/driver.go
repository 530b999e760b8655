package ipam

import (
	"context"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthnet/berth/pkg/cni"
)

// Driver runs a network's IPAM for one command of a main plugin (bridge,
// macvlan, vxlan-overlay).
//
// berth's host-local runs in-process: the same code, the same on-disk
// store and the same flock as the host-local binary, so the outcome is
// identical to delegating (also next to reference host-local processes on
// a live node), minus one process start, the largest single cost of an
// ADD. Any other IPAM type, or Exec, is delegated by exec as the CNI spec
// describes.
type Driver struct {
	// Plugin names the calling plugin in error messages.
	Plugin string
	// Type is the config's ipam.type; empty means no IPAM.
	Type string
	// Exec forces delegation by exec even for host-local.
	Exec bool
	// Args are the plugin's CNI arguments (stdin config, CNI_ARGS, key).
	Args *skel.CmdArgs
	// Valid is GC's cni.dev/valid-attachments.
	Valid []types.GCAttachment
}

func (d Driver) none() bool { return d.Type == "" }

func (d Driver) inProcess() bool { return d.Type == Plugin && !d.Exec }

// wrap keeps the inner error's code (cni.Wrap does) and says which IPAM
// failed; errors without a code become code 103 (delegate failed).
func (d Driver) wrap(err error) error {
	if err == nil {
		return nil
	}
	return cni.Wrap(cni.CodeDelegate, err, "%s: ipam %s", d.Plugin, d.Type)
}

// Validate checks an in-process host-local config (microseconds), so that
// a main plugin refuses a bad one before it creates anything; an IPAM run
// by exec validates its own config when it runs.
func (d Driver) Validate() error {
	if !d.inProcess() {
		return nil
	}
	_, err := Parse(d.Args.StdinData, d.Args.Args)
	return d.wrap(err)
}

// Add reserves the attachment's addresses and returns them.
func (d Driver) Add() (*current.Result, error) {
	res, _, err := d.reserve()
	return res, err
}

// reserve is Add, also reporting whether anything new was reserved (see
// Reserve). A delegated IPAM cannot tell: it counts as new (the reference
// host-local refuses a second reservation for an attachment anyway).
func (d Driver) reserve() (*current.Result, bool, error) {
	if d.none() {
		return &current.Result{CNIVersion: current.ImplementedSpecVersion}, false, nil
	}
	if d.inProcess() {
		c, err := Parse(d.Args.StdinData, d.Args.Args)
		if err != nil {
			return nil, false, d.wrap(err)
		}
		res, fresh, err := Reserve(c, d.Args.ContainerID, d.Args.IfName)
		return res, fresh, d.wrap(err)
	}
	r, err := invoke.DelegateAdd(context.Background(), d.Type, d.Args.StdinData, nil)
	if err != nil {
		return nil, false, d.wrap(err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, true, cni.Errorf(cni.CodeDecode, "%s: ipam %s result: %v", d.Plugin, d.Type, err)
	}
	return res, true, nil
}

// Started is an Add running in the background.
type Started struct {
	ch    chan startedResult
	done  bool
	res   *current.Result
	fresh bool
	err   error
}

type startedResult struct {
	res   *current.Result
	fresh bool
	err   error
}

// Start runs Add in the background: it overlaps the caller's netlink work
// instead of preceding it.
func (d Driver) Start() *Started {
	s := &Started{ch: make(chan startedResult, 1)}
	go func() {
		res, fresh, err := d.reserve()
		s.ch <- startedResult{res: res, fresh: fresh, err: err}
	}()
	return s
}

// Wait returns Add's answer; later calls return the same answer.
func (s *Started) Wait() (*current.Result, error) {
	if !s.done {
		r := <-s.ch
		s.done, s.res, s.fresh, s.err = true, r.res, r.fresh, r.err
	}
	return s.res, s.err
}

// Fresh reports, after Wait, whether the Add reserved anything new: only
// then may a failed ADD release the attachment's reservations.
func (s *Started) Fresh() bool { return s.fresh }

// do runs one result-less command: inproc on the parsed config when
// host-local runs in-process, else delegated by exec.
func (d Driver) do(inproc func(*Config) error, delegate func(context.Context, string, []byte, invoke.Exec) error) error {
	if d.none() {
		return nil
	}
	if !d.inProcess() {
		return delegate(context.Background(), d.Type, d.Args.StdinData, nil)
	}
	c, err := Parse(d.Args.StdinData, d.Args.Args)
	if err != nil {
		return err
	}
	return inproc(c)
}

// Del releases the attachment's addresses.
func (d Driver) Del() error {
	return d.wrap(d.do(func(c *Config) error {
		return Del(c, d.Args.ContainerID, d.Args.IfName)
	}, invoke.DelegateDel))
}

// Check verifies the attachment's reservations against prev.
func (d Driver) Check(prev *current.Result) error {
	return d.wrap(d.do(func(c *Config) error {
		return Check(c, d.Args.ContainerID, d.Args.IfName, prev)
	}, invoke.DelegateCheck))
}

// GC releases every reservation not in d.Valid.
func (d Driver) GC() error {
	return d.wrap(d.do(func(c *Config) error {
		return GC(c, cni.ValidSet(d.Valid))
	}, invoke.DelegateGC))
}

// Status is code 50 (not available) whatever the IPAM's own code.
func (d Driver) Status() error {
	if err := d.do(Status, invoke.DelegateStatus); err != nil {
		return cni.Wrap(cni.CodePluginNotAvailable, err, "%s: ipam %s", d.Plugin, d.Type)
	}
	return nil
}
