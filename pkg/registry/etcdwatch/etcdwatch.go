// Package etcdwatch follows a network's registry entries in etcd through
// etcd's JSON gateway. It is a package of its own so that importing
// pkg/registry (every attaching plugin does) never links net/http.
package etcdwatch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/berthnet/berth/pkg/registry"
)

// Watch follows one network's entries in etcd through etcd's JSON
// gateway (POST /v3/kv/range and /v3/watch, plain HTTP and JSON, which etcd
// serves on its client URLs by default since 3.3). It exists beside the
// clientv3 backend (pkg/registry/etcdstore) for the DNS sidecar: a process
// that runs for as long as containers do and must stay small, and that
// linking gRPC and protobuf would make twice as large. It only reads.
type Watch struct {
	// Endpoints are etcd client URLs, tried in order.
	Endpoints []string
	// Prefix is the registry's key prefix, as in Config.
	Prefix string
	// Network is the network followed.
	Network string
	// Client makes the requests; http.DefaultClient if nil.
	Client *http.Client
}

// Event is one change of an entry of the network.
type Event struct {
	// Revision is the etcd revision of the change.
	Revision int64
	// Key is the attachment's EntryName (containerID@ifname).
	Key string
	// Entry is the new value; nil for a deletion.
	Entry *registry.Entry
}

type kv struct {
	Key         string      `json:"key"`
	Value       string      `json:"value"`
	ModRevision json.Number `json:"mod_revision"`
}

type header struct {
	Revision json.Number `json:"revision"`
}

func (w *Watch) keyRange() (key, end string) {
	p := registry.EtcdPrefix(w.Prefix) + w.Network + "/"
	// The range end of a prefix: the prefix with its last byte + 1 ('/'+1).
	return base64.StdEncoding.EncodeToString([]byte(p)), base64.StdEncoding.EncodeToString([]byte(p[:len(p)-1] + "0"))
}

func (w *Watch) post(ctx context.Context, path string, body any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	cl := w.Client
	if cl == nil {
		cl = http.DefaultClient
	}
	var errs []error
	for _, ep := range w.Endpoints {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(ep, "/")+path, bytes.NewReader(b))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		resp, err := cl.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			errs = append(errs, fmt.Errorf("%s%s: %s: %s", ep, path, resp.Status, bytes.TrimSpace(msg)))
			continue
		}
		return resp, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	return nil, errors.Join(errs...)
}

// Snapshot returns the network's entries and the revision they are at.
func (w *Watch) Snapshot(ctx context.Context) ([]*registry.Entry, int64, error) {
	key, end := w.keyRange()
	resp, err := w.post(ctx, "/v3/kv/range", map[string]string{"key": key, "range_end": end})
	if err != nil {
		return nil, 0, fmt.Errorf("registry: etcd range %s: %w", w.Network, err)
	}
	defer resp.Body.Close()
	var r struct {
		Header header `json:"header"`
		Kvs    []kv   `json:"kvs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, 0, fmt.Errorf("registry: etcd range %s: %w", w.Network, err)
	}
	rev, err := r.Header.Revision.Int64()
	if err != nil {
		return nil, 0, fmt.Errorf("registry: etcd range %s: revision %q: %w", w.Network, r.Header.Revision, err)
	}
	out := make([]*registry.Entry, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		e, err := decodeEntry(kv.Value)
		if err != nil {
			return nil, 0, fmt.Errorf("registry: etcd %s: %w", w.Network, err)
		}
		out = append(out, e)
	}
	return out, rev, nil
}

func decodeEntry(b64 string) (*registry.Entry, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, err
	}
	var e registry.Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Watch calls fn for every change after revision rev, in order, until ctx
// ends (nil) or the stream fails or etcd cancels it (an error: the caller
// takes a new Snapshot and watches again).
func (w *Watch) Watch(ctx context.Context, rev int64, fn func(Event)) error {
	key, end := w.keyRange()
	resp, err := w.post(ctx, "/v3/watch", map[string]any{"create_request": map[string]string{
		"key": key, "range_end": end, "start_revision": strconv.FormatInt(rev+1, 10),
	}})
	if err != nil {
		return fmt.Errorf("registry: etcd watch %s: %w", w.Network, err)
	}
	defer resp.Body.Close()
	prefix := registry.EtcdPrefix(w.Prefix) + w.Network + "/"
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var msg struct {
			Result struct {
				Canceled     bool   `json:"canceled"`
				CancelReason string `json:"cancel_reason"`
				Events       []struct {
					Type string `json:"type"` // "DELETE", or absent for a put
					Kv   kv     `json:"kv"`
				} `json:"events"`
			} `json:"result"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("registry: etcd watch %s: %w", w.Network, err)
		}
		if msg.Error != nil {
			return fmt.Errorf("registry: etcd watch %s: %s", w.Network, msg.Error.Message)
		}
		if msg.Result.Canceled {
			return fmt.Errorf("registry: etcd watch %s canceled: %s", w.Network, msg.Result.CancelReason)
		}
		for _, ev := range msg.Result.Events {
			k, err := base64.StdEncoding.DecodeString(ev.Kv.Key)
			if err != nil {
				return fmt.Errorf("registry: etcd watch %s: key: %w", w.Network, err)
			}
			r, _ := ev.Kv.ModRevision.Int64()
			out := Event{Revision: r, Key: strings.TrimPrefix(string(k), prefix)}
			if ev.Type != "DELETE" {
				if out.Entry, err = decodeEntry(ev.Kv.Value); err != nil {
					return fmt.Errorf("registry: etcd watch %s: %s: %w", w.Network, k, err)
				}
			}
			fn(out)
		}
	}
}
