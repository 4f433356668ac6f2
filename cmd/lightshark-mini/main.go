// Command lightshark-mini is the all-in-one entry point with the original
// tool's flags, which supervises the capturer and the API server. It is
// being built: this version only answers --version and --help.
package main

import (
	"fmt"
	"os"

	"github.com/lightshark-dev/lightshark-mini/pkg/version"
)

func main() {
	for _, a := range os.Args[1:] {
		switch a {
		case "--version":
			fmt.Println(version.String("lightshark-mini"))
			return
		case "-h", "--help":
			fmt.Println("usage: lightshark-mini [-i IFACE] [-p PORT] [--db-path FILE] [filters]\n\n" +
				"The supervisor is not implemented in this version; use\n" +
				"lightshark-capturer -i IFACE --output jsonl for live flows.")
			return
		}
	}
	fmt.Fprintln(os.Stderr, "lightshark-mini: not implemented in this version (see lightshark-capturer)")
	os.Exit(2)
}
