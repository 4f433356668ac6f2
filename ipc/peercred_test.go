package ipc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/ipc/ipctest"
)

// peerEnv, when set, makes the test binary a capturer peer: it delivers one
// batch to the socket it names and prints the outcome.
const peerEnv = "IPC_TEST_PEER_SOCKET"

func TestMain(m *testing.M) {
	if path := os.Getenv(peerEnv); path != "" {
		os.Exit(runPeer(path))
	}
	os.Exit(m.Run())
}

// runPeer sends one batch with a real Client and prints "delivered", or
// "error CODE" for an error frame, or "error: ..." otherwise.
func runPeer(path string) int {
	c := &ipc.Client{Path: path, MinBackoff: time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Hello: ipc.Hello{InstanceID: fmt.Sprint("peer-", os.Getuid())}}
	if err := c.Start(context.Background()); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	if err := c.Send(ipctest.Batch(0, 1, 0, 0)); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		var e *ipc.Error
		if errors.As(c.Stats().LastError, &e) {
			fmt.Println("error", e.Code)
		} else {
			fmt.Println("error:", c.Stats().LastError)
		}
		return 1
	}
	fmt.Println("delivered")
	return 0
}

// TestServer_PeerUID runs the peer as another real uid (65534, nobody)
// and checks the SO_PEERCRED allowlist: refused when not allowed, accepted
// and identified when allowed; and the default socket mode keeps that uid
// from connecting at all.
func TestServer_PeerUID(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_PEERCRED is Linux only")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a peer as uid 65534")
	}
	const nobody = 65534
	// Both the binary and the socket must be reachable by nobody.
	dir, err := os.MkdirTemp("", "ipcuid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "peer.test")
	copyFile(t, bin)

	runAs := func(uid int, path string) (string, int) {
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), peerEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(wait):
			cmd.Process.Kill()
			<-done
			t.Fatalf("peer as uid %d still running after %v", uid, wait)
		}
		return strings.TrimSpace(out.String()), pid
	}

	tests := []struct {
		name    string
		mode    os.FileMode
		allowed []int
		want    string
	}{
		{"uid not allowed", 0o666, []int{0}, "error " + ipc.ErrCodeForbidden},
		{"uid allowed", 0o666, []int{0, nobody}, "delivered"},
		{"socket mode keeps it out", 0o660, []int{0, nobody}, "connect: permission denied"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprint(i, ".sock"))
			h := &ipctest.Handler{}
			s := startServer(t, path, h, func(s *ipc.Server) { s.Mode, s.AllowedUIDs = tt.mode, tt.allowed })
			out, pid := runAs(nobody, path)
			if !strings.Contains(out, tt.want) {
				t.Fatalf("peer as uid %d said %q, want %q", nobody, out, tt.want)
			}
			in := h.Instance(fmt.Sprint("peer-", nobody))
			switch tt.want {
			case "delivered":
				if in.Peer.UID != nobody || in.Peer.GID != nobody || in.Peer.PID != pid || len(in.Seqs) != 1 {
					t.Errorf("peer %+v, %d batches; want uid/gid %d, pid %d, 1 batch", in.Peer, len(in.Seqs), nobody, pid)
				}
			default:
				if len(in.Seqs) != 0 {
					t.Errorf("applied %v from a refused peer", in.Seqs)
				}
			}
			if tt.want == "error "+ipc.ErrCodeForbidden && s.Stats().Rejected == 0 {
				t.Errorf("stats %+v, want rejections", s.Stats())
			}
		})
	}
}

// copyFile copies the running test binary to dst, executable by all.
func copyFile(t *testing.T, dst string) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
