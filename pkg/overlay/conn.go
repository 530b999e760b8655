package overlay

import (
	"context"
	"errors"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/etcdstore"
)

// conn is a network's etcd client, shared by the daemon's lease and
// watch loops and made anew when its connection is found dead: a TCP
// connection whose source address left the host (the underlay address
// changed) stalls every request without failing, and gRPC would not
// notice for minutes.
type conn struct {
	cfg   *registry.Config
	mu    sync.Mutex
	store *etcdstore.Etcd
	gen   int
}

func newConn(n *Network) *conn {
	return &conn{cfg: &registry.Config{Backend: registry.BackendEtcd, Endpoints: n.Store.Endpoints, TLS: n.Store.TLS, DialTimeout: 2 * time.Second}}
}

// get returns the client (opened on first use) and its generation.
func (c *conn) get() (*clientv3.Client, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.store == nil {
		s, err := etcdstore.OpenConfig(c.cfg)
		if err != nil {
			return nil, c.gen, err
		}
		c.store = s
	}
	return c.store.Client(), c.gen, nil
}

// reset closes generation gen's client (unless another caller did
// already), which also ends its watches; the next get opens a new one.
func (c *conn) reset(gen int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || c.store == nil {
		return
	}
	c.store.Close()
	c.store = nil
	c.gen++
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.store != nil {
		c.store.Close()
		c.store = nil
	}
}

// stalled: a request ran out of time (rather than being refused), the
// sign of a connection that carries nothing.
func stalled(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded
}
