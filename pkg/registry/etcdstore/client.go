package etcdstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berthnet/berth/pkg/registry"
)

// Client is the underlying etcd client, for users of etcd beyond the
// registry's entries (the overlay's subnet leases: transactions and
// leases), so that OpenConfig stays the one place a client is made.
func (s *Etcd) Client() *clientv3.Client { return s.cli }

// clientTLS builds the client's TLS settings from c; nil means plain TCP.
func clientTLS(c *registry.TLSConfig) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TrustedCAFile != "" {
		pem, err := os.ReadFile(c.TrustedCAFile)
		if err != nil {
			return nil, fmt.Errorf("trustedCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("trustedCAFile %s: no PEM certificate", c.TrustedCAFile)
		}
		conf.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("certFile and keyFile go together")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("certFile/keyFile: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}
