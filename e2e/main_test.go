//go:build linux

package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The binaries under test, built once by TestMain into binDir (mode 0755,
// so the unprivileged uids the tests use can run them).
var (
	binDir      string
	capturerBin string
	apiBin      string
	miniBin     string
	// helperBin is a copy of this test binary that other uids can run; with
	// helperEnv set it runs a helper (helpers_test.go) instead of tests.
	helperBin string
	// skipReason, when set, skips every test (not root, a tool missing).
	skipReason string
)

// tools are the programs the tests run; `make test` installs them
// (Makefile TEST_PKGS).
var tools = []string{"ip", "tcpdump", "curl", "python3", "iperf3", "dnsmasq", "dig", "ping", "ethtool", "tcpreplay"}

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	skipReason = requirements()
	if skipReason == "" {
		var err error
		if binDir, err = buildBinaries(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// requirements returns why the tests cannot run here, or "".
func requirements() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces, uids, CAP_NET_RAW)"
	}
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return "not found: " + strings.Join(missing, ", ") + " (make test installs them)"
	}
	return ""
}

// setup skips t when the machine cannot run the system tests.
func setup(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// buildBinaries builds the three commands as shipped (static, no race
// detector) from the module root, and copies this test binary beside them.
func buildBinaries() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "lightshark-e2e-bin-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", dir+"/", "./cmd/capturer", "./cmd/apiserver", "./cmd/lightshark-mini")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	capturerBin = filepath.Join(dir, "lightshark-capturer")
	apiBin = filepath.Join(dir, "lightshark-apiserver")
	miniBin = filepath.Join(dir, "lightshark-mini")
	for from, to := range map[string]string{"capturer": capturerBin, "apiserver": apiBin} {
		if err := os.Rename(filepath.Join(dir, from), to); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	self, err := os.Executable()
	if err == nil {
		helperBin = filepath.Join(dir, "e2e-helper")
		err = copyFile(self, helperBin, 0o755)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("copy the test binary: %w", err)
	}
	return dir, nil
}

func copyFile(from, to string, mode os.FileMode) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// moduleRoot is testenv.ModuleRoot without a testing.TB (TestMain has
// none): the directory holding go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}
