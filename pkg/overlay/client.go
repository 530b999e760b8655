package overlay

// The plugin side of berth-overlayd: requests, the attachments they come
// from, and the hostd client that starts the daemon when needed.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthnet/berth/internal/atomicfile"
	"github.com/berthnet/berth/internal/hostd"
)

// Binary is the daemon's file name, installed next to the plugins.
const Binary = "berth-overlayd"

// ConfigEnv carries the daemon's JSON Config.
const ConfigEnv = "BERTH_OVERLAYD"

// Config is what the daemon is started with.
type Config struct {
	// DataDir is the plugin's state directory: the daemon's own files are
	// in DataDir/overlayd.
	DataDir string `json:"dataDir"`
	LogFile string `json:"logFile"`
}

func (c Config) dir() hostd.Dir {
	return hostd.Dir{Path: filepath.Join(c.DataDir, "overlayd"), Name: Binary}
}

// PIDFile is where the running daemon writes its pid.
func (c Config) PIDFile() string { return c.dir().PIDFile() }

// Request is one change: an attachment added to (with its network's
// settings) or removed from a network.
type Request struct {
	Op      string  `json:"op"`
	Network Network `json:"network"`
	// Key is the attachment, containerID@ifname.
	Key string `json:"key"`
}

// Ops.
const (
	OpAdd = "add"
	OpDel = "del"
)

// Client starts and tells the daemon of one data directory.
type Client struct {
	Config
}

func (c *Client) hostd() (*hostd.Client[Request], error) {
	cfg, err := json.Marshal(c.Config)
	if err != nil {
		return nil, err
	}
	return &hostd.Client[Request]{
		Dir:     c.dir(),
		Binary:  Binary,
		Env:     []string{ConfigEnv + "=" + string(cfg)},
		LogFile: c.LogFile,
		Load:    func() ([]Request, error) { return LoadAttachments(c.DataDir) },
	}, nil
}

// Notify sends req, starting the daemon first when start is set and none
// runs.
func (c *Client) Notify(req Request, start bool) error {
	hc, err := c.hostd()
	if err != nil {
		return fmt.Errorf("%s: %w", Binary, err)
	}
	if err := hc.Notify(req, start); err != nil {
		return fmt.Errorf("%s: %w", Binary, err)
	}
	return nil
}

// Attachments are kept as files, DataDir/attachments/<network>/<key>.json,
// holding the network's settings: the source of truth a restarted daemon
// is loaded from.
func attachmentPath(dataDir, network, key string) string {
	return filepath.Join(dataDir, "attachments", network, key+".json")
}

// SaveAttachment records an attachment of n.
func SaveAttachment(dataDir string, n *Network, key string) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	p := attachmentPath(dataDir, n.Name, key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(p, b)
}

// RemoveAttachment forgets an attachment; a missing one is fine.
func RemoveAttachment(dataDir, network, key string) error {
	err := os.Remove(attachmentPath(dataDir, network, key))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Attachments lists a network's attachment keys.
func Attachments(dataDir, network string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dataDir, "attachments", network))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, e := range ents {
		if k, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// LoadAttachments returns every attachment as an add request.
func LoadAttachments(dataDir string) ([]Request, error) {
	nets, err := os.ReadDir(filepath.Join(dataDir, "attachments"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var reqs []Request
	for _, d := range nets {
		if !d.IsDir() {
			continue
		}
		keys, err := Attachments(dataDir, d.Name())
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			b, err := os.ReadFile(attachmentPath(dataDir, d.Name(), k))
			if errors.Is(err, os.ErrNotExist) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, err
			}
			var n Network
			if err := json.Unmarshal(b, &n); err != nil {
				return nil, fmt.Errorf("attachment %s/%s: %w", d.Name(), k, err)
			}
			reqs = append(reqs, Request{Op: OpAdd, Network: n, Key: k})
		}
	}
	return reqs, nil
}
