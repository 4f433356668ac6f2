// Command lightshark-apiserver is the unprivileged process that owns the
// flow history (SQLite) and serves the HTTP API. It is being built: this
// version only answers --version and --help (see HOW_TO_USE.md).
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
			fmt.Println(version.String("lightshark-apiserver"))
			return
		case "-h", "--help":
			fmt.Println("usage: lightshark-apiserver --socket PATH --db-path FILE [-p PORT]\n\n" +
				"The API server is not implemented in this version; use\n" +
				"lightshark-capturer --output jsonl for flows.")
			return
		}
	}
	fmt.Fprintln(os.Stderr, "lightshark-apiserver: not implemented in this version (see lightshark-capturer --output jsonl)")
	os.Exit(2)
}
