package hostd

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
)

// Startup is the first step of a daemon's main: it reads the daemon's
// config (JSON) from the environment variable env into cfg, opens the log
// file logFile(cfg) names, and returns a logger writing there with prefix
// name[pid]. what says what the daemon is, for someone who ran the binary
// by hand or a runtime that took it for a CNI plugin: without env it
// answers them with a CNI error (code 4) on stdout. Any failure is also
// reported to the starting client (Ready), so callers just return 1 on
// error. close releases the log file.
func Startup(env, name, what string, cfg any, logFile func() string) (logger *log.Logger, close func(), err error) {
	raw, ok := os.LookupEnv(env)
	if !ok {
		fmt.Printf(`{"cniVersion":"1.0.0","code":4,"msg":"%s is %s, not a CNI plugin"}`+"\n", name, what)
		return nil, nil, fmt.Errorf("%s not set", env)
	}
	fail := func(format string, a ...any) (*log.Logger, func(), error) {
		err := fmt.Errorf(format, a...)
		Ready(err)
		return nil, nil, err
	}
	if err := json.Unmarshal([]byte(raw), cfg); err != nil {
		return fail("bad %s: %v", env, err)
	}
	path := logFile()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fail("log file: %v", err)
	}
	lf, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fail("log file: %v", err)
	}
	logger = log.New(lf, name+"["+strconv.Itoa(os.Getpid())+"]: ", log.LstdFlags|log.Lmicroseconds)
	return logger, func() { lf.Close() }, nil
}
