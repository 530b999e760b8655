package main

import (
	"errors"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestTarget(t *testing.T) {
	tests := []struct {
		name    string
		fields  string // added to {"cniVersion":"1.1.0","name":"container"}
		cniArgs string
		want    string
		code    uint // 0: no error
	}{
		{"CNI_ARGS", ``, "IgnoreUnknown=1;CONTAINER=web", "web", 0},
		{"args.cni wins over CNI_ARGS", `,"args":{"cni":{"container":"db"}}`, "CONTAINER=web", "db", 0},
		{"runtimeConfig wins over all", `,"runtimeConfig":{"container":"cache"},"args":{"cni":{"container":"db"}}`, "CONTAINER=web", "cache", 0},
		{"blank runtimeConfig falls through", `,"runtimeConfig":{"container":" "}`, "CONTAINER=web", "web", 0},
		{"none given", ``, "K8S_POD_NAME=x", "", 7},
		{"malformed CNI_ARGS", ``, "CONTAINER", "", 4},
		{"runtimeConfig.container a number", `,"runtimeConfig":{"container":5}`, "", "", 6},
		{"relative attachmentsDir", `,"attachmentsDir":"x"`, "CONTAINER=web", "", 7},
		{"bad network name", `,"name":"a/b"`, "CONTAINER=web", "", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A repeated key: the last one wins (the bad-name case).
			conf := `{"cniVersion":"1.1.0","name":"container"` + tt.fields + `}`
			var got string
			c, err := loadConf([]byte(conf))
			if err == nil {
				got, err = c.target(tt.cniArgs)
			}
			var ce *types.Error
			switch {
			case tt.code == 0 && (err != nil || got != tt.want):
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			case tt.code != 0 && (!errors.As(err, &ce) || ce.Code != tt.code):
				t.Fatalf("got %q, %v; want code %d", got, err, tt.code)
			}
		})
	}
}

func TestCheckJoinerPath(t *testing.T) {
	for _, tt := range []struct {
		path string
		ok   bool
	}{
		{"/run/netns/web", true},
		{"/var/run/netns/cni-1234", true},
		{"/proc/42/ns/net", false},
		{"/proc/self/ns/net", false},
		{"/proc/../proc/1/ns/net", false},
		{"run/netns/web", false},
	} {
		if err := checkJoinerPath(tt.path); (err == nil) != tt.ok {
			t.Errorf("checkJoinerPath(%q): got %v, want ok %v", tt.path, err, tt.ok)
		}
	}
}
