package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
)

// TLSRequired reports whether c asks for TLS to etcd: a client certificate
// or a CA to verify etcd's certificate with.
func (c *Config) TLSRequired() bool {
	return c.CertFile != "" || c.KeyFile != "" || c.TrustedCAFile != ""
}

// ValidateEtcd checks the etcd settings without connecting: endpoints are
// http:// or https:// URLs, a client certificate comes with its key, and
// when TLS is asked for every endpoint is https:// (a plain-http endpoint
// would silently send the registry, and whatever the certificate was meant
// to protect, in clear). Errors name the field.
func (c *Config) ValidateEtcd() error {
	if len(c.Endpoints) == 0 {
		return errors.New("registry.endpoints: the etcd backend needs at least one endpoint")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("registry.certFile %q, registry.keyFile %q: a client certificate needs both", c.CertFile, c.KeyFile)
	}
	for i, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("registry.endpoints[%d] %q: must be an http:// or https:// URL", i, ep)
		}
		if c.TLSRequired() && u.Scheme != "https" {
			return fmt.Errorf("registry.endpoints[%d] %q: TLS is configured (certFile, keyFile or trustedCAFile): the endpoint must be https://", i, ep)
		}
	}
	return nil
}

// TLSConfig loads the client certificate and CA; nil when TLS is not asked
// for (https endpoints then use the system's roots).
func (c *Config) TLSConfig() (*tls.Config, error) {
	if !c.TLSRequired() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("registry: client certificate %s, key %s: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if c.TrustedCAFile != "" {
		pem, err := os.ReadFile(c.TrustedCAFile)
		if err != nil {
			return nil, fmt.Errorf("registry: trustedCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("registry: trustedCAFile %s: no PEM certificate in it", c.TrustedCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// HTTPClient is the client for etcd's JSON gateway (EtcdWatch) with c's
// TLS settings; nil (http.DefaultClient) without them.
func (c *Config) HTTPClient() (*http.Client, error) {
	tc, err := c.TLSConfig()
	if err != nil || tc == nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}, nil
}
