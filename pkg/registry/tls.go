package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
)

// TLSRequired reports whether c asks for TLS to etcd: a client certificate
// or a CA to verify etcd's certificate with.
func (c *Config) TLSRequired() bool {
	return c.TLS != nil && (c.TLS.CertFile != "" || c.TLS.KeyFile != "" || c.TLS.TrustedCAFile != "")
}

// ValidateEtcd checks the etcd settings without connecting: endpoints are
// http:// or https:// URLs, a client certificate comes with its key, and
// when TLS is asked for every endpoint is https:// (a plain-http endpoint
// would silently send the registry, and whatever the certificate was meant
// to protect, in clear). Errors name the field.
func (c *Config) ValidateEtcd() error {
	if len(c.Endpoints) == 0 {
		return errors.New("endpoints: the etcd backend needs at least one endpoint")
	}
	if t := c.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("tls.certFile %q, tls.keyFile %q: a client certificate needs both", t.CertFile, t.KeyFile)
	}
	for i, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("endpoints[%d] %q: must be an http:// or https:// URL", i, ep)
		}
		if c.TLSRequired() && u.Scheme != "https" {
			return fmt.Errorf("endpoints[%d] %q: TLS is configured (tls.certFile, tls.keyFile or tls.trustedCAFile): the endpoint must be https://", i, ep)
		}
	}
	return nil
}

// ClientTLS loads the client certificate and CA; nil when TLS is not asked
// for (https endpoints then use the system's roots).
func (c *Config) ClientTLS() (*tls.Config, error) {
	if !c.TLSRequired() {
		return nil, nil
	}
	t := c.TLS
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("registry: tls.certFile %s, tls.keyFile %s: %w", t.CertFile, t.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if t.TrustedCAFile != "" {
		pem, err := os.ReadFile(t.TrustedCAFile)
		if err != nil {
			return nil, fmt.Errorf("registry: tls.trustedCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("registry: tls.trustedCAFile %s: no PEM certificate in it", t.TrustedCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
