//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// The uids and gids of deployment (b), as in the two-container pod: the API
// server and the capturer run as two different unprivileged users that
// share one group (a pod's fsGroup), which owns the socket directory.
const (
	apiUID      = 65532 // the API server ("nonroot" in distroless images)
	capturerUID = 65534 // the capturer ("nobody")
	sharedGID   = 65533 // the group of the socket directory
	strangerUID = 65531 // a local user in the shared group that is not allowed
)

// cred is who a process runs as: a uid, a gid, supplementary groups and the
// ambient capabilities it keeps (nil cred: root, as the test).
type cred struct {
	uid, gid uint32
	groups   []uint32
	ambient  []uintptr
}

var (
	asAPI      = &cred{uid: apiUID, gid: sharedGID}
	asCapturer = &cred{uid: capturerUID, gid: capturerUID, groups: []uint32{sharedGID}, ambient: []uintptr{unix.CAP_NET_RAW}}
	asStranger = &cred{uid: strangerUID, gid: strangerUID, groups: []uint32{sharedGID}}
)

// proc is a process a test started, killed at cleanup if still running.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testenv.Buffer // standard output and error
	done chan struct{}   // closed when it exited
	err  error           // Wait's result, set before done is closed
}

// startProc starts args as c inside network namespace ns ("" for the
// test's own). The process is forked from a thread that joined ns, so it is
// the program itself (no "ip netns exec" in between): its pid is the one to
// signal and to read /proc of.
func startProc(t testing.TB, ns, name string, c *cred, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, ns, name, c, nil, args...)
}

// startProcEnv is startProc with an environment (nil: the test's).
func startProcEnv(t testing.TB, ns, name string, c *cred, env []string, args ...string) *proc {
	t.Helper()
	return startProcStdin(t, ns, name, c, env, nil, args...)
}

// startProcStdin is startProcEnv with a standard input (nil: none).
func startProcStdin(t testing.TB, ns, name string, c *cred, env []string, stdin io.Reader, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	cmd.Stdin = stdin
	p := &proc{name: name, cmd: cmd, out: &testenv.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: c.uid, Gid: c.gid, Groups: c.groups}
		cmd.SysProcAttr.AmbientCaps = c.ambient
	}
	start := cmd.Start
	var err error
	if ns != "" {
		err = testenv.InNetns(ns, start)
	} else {
		err = start()
	}
	if err != nil {
		t.Fatalf("start %s (%s): %v", name, strings.Join(args, " "), err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not die after SIGKILL", name, cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("%s output (last 4 KiB):\n%s", name, tail(p.out.String(), 4096))
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (p *proc) kill9(t testing.TB) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
	if _, err := p.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// wait waits up to d for the process to exit and returns its exit code
// (-1 for a signal); after d it kills it and returns an error.
func (p *proc) wait(d time.Duration) (int, error) {
	select {
	case <-p.done:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
		return -1, fmt.Errorf("%s did not exit within %v", p.name, d)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0, nil
	case errors.As(p.err, &ee):
		return ee.ExitCode(), nil
	}
	return -1, p.err
}

// stop sends SIGTERM and requires a clean exit (status 0) within d.
func (p *proc) stop(t testing.TB, d time.Duration) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	code, err := p.wait(d)
	if err != nil || code != 0 {
		t.Errorf("%s after SIGTERM: exit %d, %v; want a clean exit within %v\n%s", p.name, code, err, d, tail(p.out.String(), 4096))
	}
}

// status returns the fields of /proc/PID/status.
func (p *proc) status() (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// rss returns the resident set size in bytes (VmRSS).
func (p *proc) rss(t testing.TB) int64 {
	t.Helper()
	n := rssOf(p)
	if n < 0 {
		t.Fatalf("%s: no VmRSS in /proc/%d/status (exited: %v)", p.name, p.pid(), p.exited())
	}
	return n
}

// rssOf is rss for any goroutine: -1 when it cannot be read.
func rssOf(p *proc) int64 {
	st, err := p.status()
	if err != nil {
		return -1
	}
	kb, err := strconv.ParseInt(strings.TrimSuffix(st["VmRSS"], " kB"), 10, 64)
	if err != nil {
		return -1
	}
	return kb << 10
}

// requirePrivileges checks /proc/PID/status: the uid and no capability
// left in any set (the capturer drops CAP_NET_RAW once its socket is open).
func (p *proc) requirePrivileges(t testing.TB, uid int) {
	t.Helper()
	st, err := p.status()
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	u := strconv.Itoa(uid)
	if want := strings.Join([]string{u, u, u, u}, "\t"); st["Uid"] != want {
		t.Errorf("%s: Uid %q, want %q", p.name, st["Uid"], want)
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb"} {
		if st[k] != "0000000000000000" {
			t.Errorf("%s: %s %s, want no capability", p.name, k, st[k])
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// waitFor polls cond every 50 ms until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run runs args (in namespace ns unless "") within d and returns their
// combined output, failing the test if they fail.
func run(t testing.TB, d time.Duration, ns string, args ...string) string {
	t.Helper()
	out, err := runErr(d, ns, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(d time.Duration, ns string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}
