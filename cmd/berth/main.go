// Command berth shows and cleans up what berth's CNI plugins attached:
// `berth network ls|inspect|prune`, `berth ps`, `berth port`, `berth gc`.
// The commands live in internal/cli.
package main

import (
	"os"

	"github.com/berthnet/berth/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
