// Command devconfig writes the development layout `make run` starts the
// daemon on: containerd's config and a bridge+portmap pod network, with the
// same generator the integration tests use.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nodecri/nodecri/integration/daemon"
)

func main() {
	dir := flag.String("dir", "_run", "folder for config, sockets and state")
	bin := flag.String("bin", "bin", "folder holding runc, the shim and ctr")
	metrics := flag.String("metrics", "127.0.0.1:1338", "metrics endpoint address")
	subnet := flag.String("subnet", "10.88.0.0/16", "pod subnet")
	flag.Parse()
	absDir, _ := filepath.Abs(*dir)
	absBin, _ := filepath.Abs(*bin)
	l := daemon.NewLayout(absDir, absBin, *metrics, daemon.Network{Name: "nodecri", Bridge: "nodecri0", Subnet: *subnet})
	if err := l.WriteConfig(); err != nil {
		fail(err)
	}
	if err := l.WriteConflist(); err != nil {
		fail(err)
	}
	fmt.Println(l.ConfigPath())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "devconfig:", err)
	os.Exit(1)
}
