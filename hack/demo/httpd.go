package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"

	"github.com/berthnet/berth/internal/sandbox"
)

// httpdArg is the hidden subcommand that turns this binary into the
// "httpd" container's web server: `demo httpd ADDR TEXT`. The demo starts
// it inside a container namespace with ip netns exec.
const httpdArg = "httpd"

// serveHTTP answers every request with text and the caller's address, so
// the demo shows what the container saw.
func serveHTTP(addr, text string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// Tell the parent we are listening: it waits for this line rather
	// than sleeping.
	fmt.Println("listening")
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s (you are %s)\n", text, r.RemoteAddr)
	}))
}

// startHTTPD runs the web server inside ns and returns once it listens.
func (d *demo) startHTTPD(ns *sandbox.NS, addr, text string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := ns.Command(exe, httpdArg, addr, text)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start httpd in %s: %w", ns.Name, err)
	}
	d.procs = append(d.procs, cmd)
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "listening") {
		return fmt.Errorf("httpd in %s did not start", ns.Name)
	}
	return nil
}

func stopProcs(procs []*exec.Cmd) {
	for _, p := range procs {
		_ = p.Process.Kill()
		_ = p.Wait()
	}
}
