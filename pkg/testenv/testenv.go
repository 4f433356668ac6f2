// Package testenv holds test gates and fixtures shared by the project's
// tests: skipping with a reason when a privilege, tool or data set is
// missing, locating the shared corpus, and (Linux) throwaway network
// namespaces joined by a veth pair.
//
// It is for tests only and imports the standard library only; no product
// package may import it.
package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// RequireRoot skips the test unless it runs as uid 0 ("needs root").
// Creating network namespaces and opening AF_PACKET sockets need it.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, CAP_NET_RAW)")
	}
}

// RequireTool returns the path of the named program, or skips the test
// ("tshark not found") when it is not on PATH.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found", name)
	}
	return p
}

// ModuleRoot returns the directory holding go.mod, found by walking up from
// the test's working directory (its package directory under go test).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// SharedDir returns the project's shared test data directory, "shared" next
// to the module root (../shared from the repository), which holds
// pcaps/ (see pcaps/MANIFEST.md). It skips the test when shared/pcaps is
// absent, as in a fresh clone.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(ModuleRoot(t)), "shared")
	if fi, err := os.Stat(filepath.Join(dir, "pcaps")); err != nil || !fi.IsDir() {
		t.Skip("shared/pcaps not found (fresh clone): skipping")
	}
	return dir
}

// Buffer is a bytes.Buffer that a process's output goroutine may write
// while the test reads it (for exec.Cmd's Stdout and Stderr).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
