package testenv

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestModuleRoot(t *testing.T) {
	root := ModuleRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(b), "module github.com/lightshark-dev/lightshark-mini") {
		t.Errorf("%s: not the module root (%v)", root, err)
	}
}

func TestSharedDir(t *testing.T) {
	dir := SharedDir(t)
	if filepath.Base(dir) != "shared" {
		t.Errorf("SharedDir = %s", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "pcaps", "MANIFEST.md")); err != nil {
		t.Error(err)
	}
}

func interfaceNames(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ifc := range ifs {
		names = append(names, ifc.Name)
	}
	return names
}
