// Package version reports the build's version and commit, set at link time
// with -ldflags "-X" (see the Makefile), else read from the module's build
// information.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set by the linker:
//
//	-X github.com/lightshark-dev/lightshark-mini/pkg/version.Version=v0.1.0
var (
	Version = ""
	Commit  = ""
)

// Info returns version, commit and Go version, falling back to the VCS
// data Go embeds in the binary.
func Info() (version, commit, goVersion string) {
	version, commit = Version, Commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && commit == "" {
				commit = s.Value
			}
		}
	}
	if version == "" {
		version = "dev"
	}
	if commit == "" {
		commit = "unknown"
	}
	return version, commit, runtime.Version()
}

// String is the one-line form printed by --version.
func String(program string) string {
	v, c, g := Info()
	return fmt.Sprintf("%s %s (commit %s, %s %s/%s)", program, v, c, g, runtime.GOOS, runtime.GOARCH)
}
