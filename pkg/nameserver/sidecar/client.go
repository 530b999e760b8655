package sidecar

// The plugin side: start the sidecar when needed and tell it about each
// change, synchronously, so that a name resolves the moment ADD returns
// and is gone the moment DEL returns.

import (
	"encoding/json"
	"fmt"

	"github.com/berthnet/berth/internal/hostd"
)

// ErrNotRunning: no sidecar is there to take the request.
var ErrNotRunning = hostd.ErrNotRunning

// Client talks to the sidecar of one data directory.
type Client struct {
	Config
	// Load returns the registry's whole contents, as replace requests,
	// for a sidecar being started. It runs under the start lock, so every
	// change made after it is also sent to the sidecar it starts.
	Load func() ([]Request, error)
}

// Notify sends req to the sidecar. With start, a missing (or exiting, or
// crashed) sidecar is started first; without, a missing one is fine: it
// will get the registry's contents when it next starts.
func (c *Client) Notify(req Request, start bool) error {
	cfg, err := json.Marshal(c.Config)
	if err != nil {
		return fmt.Errorf("dns sidecar: %w", err)
	}
	hc := &hostd.Client[Request]{
		Dir:     c.Dir(),
		Binary:  Binary,
		Env:     []string{ConfigEnv + "=" + string(cfg)},
		LogFile: c.LogFile,
		Load:    c.Load,
	}
	if err := hc.Notify(req, start); err != nil {
		return fmt.Errorf("dns sidecar: %w", err)
	}
	return nil
}
