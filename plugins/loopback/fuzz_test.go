package main

import (
	"testing"

	"github.com/berthnet/berth/internal/cnifuzz"
)

// FuzzParseConf: the loopback config and its prevResult never panic the
// plugin; bad input is a config code.
func FuzzParseConf(f *testing.F) {
	for _, s := range cnifuzz.Seeds(f, "loopback") {
		f.Add(s)
	}
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","type":"loopback","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"lo","sandbox":"/run/netns/x"}],"ips":[{"address":"127.0.0.1/8","interface":0}]}}`))
	f.Fuzz(func(t *testing.T, stdin []byte) {
		_, err := loadConf(stdin)
		cnifuzz.CheckErr(t, plugin, err)
	})
}
