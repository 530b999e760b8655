package dnsplugin

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// TestEtcdTLSConfig: TLS settings for the etcd registry are checked at
// ADD with code 7 naming the field; DEL of such a config has nothing to do.
func TestEtcdTLSConfig(t *testing.T) {
	tests := []struct {
		name, registry, field string
	}{
		{"http endpoint with a client certificate", `{"backend":"etcd","endpoints":["http://127.0.0.1:2379"],"tls":{"certFile":"/c.pem","keyFile":"/k.pem"}}`, "registry.endpoints[0]"},
		{"http endpoint with a CA", `{"backend":"etcd","endpoints":["https://a:2379","http://b:2379"],"tls":{"trustedCAFile":"/ca.pem"}}`, "registry.endpoints[1]"},
		{"certificate without key", `{"backend":"etcd","endpoints":["https://127.0.0.1:2379"],"tls":{"certFile":"/c.pem"}}`, "tls.keyFile"},
		{"not a URL", `{"backend":"etcd","endpoints":["127.0.0.1:2379"]}`, "registry.endpoints[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdin := []byte(`{"cniVersion":"1.1.0","name":"n","type":"dnsname","registry":` + tc.registry + `}`)
			_, err := loadConf(stdin, false)
			var ce *types.Error
			if !errors.As(err, &ce) || ce.Code != 7 || !strings.Contains(ce.Msg, tc.field) {
				t.Fatalf("got %v, want code 7 naming %s", err, tc.field)
			}
			if _, err := loadConf(stdin, true); !errors.Is(err, errNeverAdded) {
				t.Fatalf("lenient (DEL): got %v, want errNeverAdded", err)
			}
		})
	}
	ok := []byte(`{"cniVersion":"1.1.0","name":"n","type":"dnsname","registry":{"backend":"etcd","endpoints":["https://127.0.0.1:2379"],"tls":{"certFile":"/c.pem","keyFile":"/k.pem","trustedCAFile":"/ca.pem"}}}`)
	if _, err := loadConf(ok, false); err != nil {
		t.Fatalf("https with certificate, key and CA: %v", err)
	}
}
