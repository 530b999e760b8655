package overlay_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthnet/berth/internal/nstest"
)

// tlsFiles are the PEM files of a throwaway CA, etcd's server certificate
// and a client certificate.
type tlsFiles struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

// newTLS makes a CA and certificates for etcd at ip and for a client.
func newTLS(t *testing.T, ip string) *tlsFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	f := &tlsFiles{ca: write("ca.pem", "CERTIFICATE", caDER)}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(cn+".pem", "CERTIFICATE", der), write(cn+"-key.pem", "EC PRIVATE KEY", kder)
	}
	f.serverCert, f.serverKey = issue(2, "etcd", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP(ip)})
	f.clientCert, f.clientKey = issue(3, "client", x509.ExtKeyUsageClientAuth, nil)
	return f
}

// TestTLS: the store's tls settings: etcd over https with client
// certificates; a config without the client certificate cannot claim.
func TestTLS(t *testing.T) {
	c := newCluster(t)
	c.startEtcdWith(newTLS(t, underlayNet+"254"))
	h1, h2 := c.addHost(), c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	a := h1.Run(h1.list(raw), "alpha")
	b := h2.Run(h2.list(raw), "bravo")
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	h3 := c.addHost()
	noCert := c.conf("ovl", 42, "10.96.0.0/16", func(p map[string]any) {
		p["store"].(map[string]any)["tls"] = map[string]any{"trustedCAFile": c.etcd.tls.ca}
	})
	if _, err := h3.tryRun(h3.list(noCert), "charlie"); err == nil {
		t.Fatal("a claim without a client certificate succeeded")
	}
}
