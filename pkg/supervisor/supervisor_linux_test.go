package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// running is a Supervisor's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
	out    *testenv.Buffer
}

// start runs s (with Stderr set to a buffer the test reads) until the
// test stops it or ends; the buffer is logged when the test fails.
func start(t *testing.T, s *Supervisor) *running {
	t.Helper()
	r := &running{done: make(chan error, 1), out: &testenv.Buffer{}}
	s.Stderr = r.out
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return 30s after the test ended")
		}
		if t.Failed() {
			t.Logf("supervisor output:\n%s", r.out.String())
		}
	})
	return r
}

// stop cancels Run and returns its error.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return within 30s of cancel")
		return nil
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ev is one line of a helper's events file.
type ev struct {
	what, name string
	at         time.Time
}

func readEvents(t *testing.T, path string) []ev {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var evs []ev
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		ns, _ := strconv.ParseInt(f[2], 10, 64)
		evs = append(evs, ev{f[0], f[1], time.Unix(0, ns)})
	}
	return evs
}

// eventsFile returns a path for helper events that any uid may create.
func eventsFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "events")
}

func hasEvent(evs []ev, what, name string) bool {
	for _, e := range evs {
		if e.what == what && e.name == name {
			return true
		}
	}
	return false
}

// lines returns the lines of out holding all of the substrings.
func lines(out string, subs ...string) []string {
	var res []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
next:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue next
			}
		}
		res = append(res, sc.Text())
	}
	return res
}

// attrs reads the space-separated key=value pairs of a helper's status
// line (whose values hold no space).
func attrs(line string) map[string]string {
	m := make(map[string]string)
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = strings.Trim(v, `"`)
	}
	return m
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// As root, the API server runs as an unprivileged uid with no capability,
// and the capturer as another with CAP_NET_RAW only, ambient.
func TestRun_Privileges(t *testing.T) {
	testenv.RequireRoot(t)
	bin := helperBinary(t)
	r := start(t, &Supervisor{Children: []Child{
		{Name: "apiserver", Path: bin, Env: helperChildEnv("status"),
			Cred: &syscall.Credential{Uid: 65532, Gid: 65532}},
		{Name: "capturer", Path: bin, Env: helperChildEnv("status"),
			Cred: &syscall.Credential{Uid: 65534, Gid: 65534}, AmbientCaps: []uintptr{unix.CAP_NET_RAW}},
	}})
	status := map[string]map[string]string{}
	waitFor(t, 20*time.Second, "the status of both children", func() bool {
		for _, l := range lines(r.out.String(), "msg=status") {
			a := attrs(l)
			status[a["proc"]] = a
		}
		return len(status) == 2
	})
	const none, netRaw = "0000000000000000", "0000000000002000" // bit 13
	tests := []struct {
		proc, uid, gid, capEff, capPrm, capAmb string
	}{
		{"apiserver", "65532,65532,65532,65532", "65532,65532,65532,65532", none, none, none},
		{"capturer", "65534,65534,65534,65534", "65534,65534,65534,65534", netRaw, netRaw, netRaw},
	}
	for _, tt := range tests {
		got := status[tt.proc]
		want := map[string]string{"uid": tt.uid, "gid": tt.gid, "groups": "", "capeff": tt.capEff,
			"capprm": tt.capPrm, "capamb": tt.capAmb, "own_pgrp": "true"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: got %s %q, want %q", tt.proc, k, got[k], v)
			}
		}
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// Without root, children run as the supervisor's own user, and children
// that need more are refused with the reason before anything starts.
func TestRun_Unprivileged(t *testing.T) {
	testenv.RequireRoot(t) // to become another user
	bin := helperBinary(t)
	var out testenv.Buffer
	cmd := exec.Command(bin)
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = helperChildEnv("supervise", helperChild+"=status")
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("supervisor output:\n%s", out.String())
		}
	})
	var status []string
	waitFor(t, 20*time.Second, "the child's status", func() bool {
		status = lines(out.String(), "msg=status", "proc=child")
		return len(status) > 0
	})
	a := attrs(status[0])
	if a["uid"] != "65534,65534,65534,65534" || a["capeff"] != "0000000000000000" || a["capamb"] != "0000000000000000" {
		t.Errorf("got child uid %q, CapEff %q, CapAmb %q; want uid 65534 and no capability", a["uid"], a["capeff"], a["capamb"])
	}
	priv := lines(out.String(), "msg=privileges")
	if len(priv) != 1 {
		t.Fatalf("got %d privileges lines, want 1", len(priv))
	}
	for _, want := range []string{"can_switch_user=false", "has_net_raw=false",
		`cred_err="try: run as uid 65533 gid 65533: needs CAP_SETUID and CAP_SETGID`,
		`caps_err="try: ambient CAP_NET_RAW: the supervisor does not hold it`} {
		if !strings.Contains(priv[0], want) {
			t.Errorf("privileges line %q lacks %q", priv[0], want)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("supervisor exited with %v, want 0 after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("supervisor did not exit within 20s of SIGTERM")
	}
}

func TestCanSwitchUser(t *testing.T) {
	testenv.RequireRoot(t)
	if !CanSwitchUser() || !HasCap(unix.CAP_NET_RAW) {
		t.Errorf("as root: got CanSwitchUser %v, HasCap(CAP_NET_RAW) %v; want true, true", CanSwitchUser(), HasCap(unix.CAP_NET_RAW))
	}
}

// A child that dies is restarted after a backoff that doubles, and each
// restart is logged with the exit status.
func TestRun_Restart(t *testing.T) {
	bin := helperBinary(t)
	file := eventsFile(t)
	const minBackoff = 40 * time.Millisecond
	r := start(t, &Supervisor{
		Children: []Child{{Name: "crasher", Path: bin,
			Env: helperChildEnv("crash", helperFile+"="+file, helperName+"=crasher", helperMS+"=30")}},
		StartupWindow: 10 * time.Millisecond, // up at once: never fatal
		MinBackoff:    minBackoff,
		MaxBackoff:    8 * minBackoff,
	})
	var starts []time.Time
	waitFor(t, 30*time.Second, "5 starts", func() bool {
		starts = starts[:0]
		for _, e := range readEvents(t, file) {
			starts = append(starts, e.at)
		}
		return len(starts) >= 5
	})
	if err := r.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	// Each start follows the previous one by its run (30ms) and the
	// backoff, 40, 80, 160 then 320ms; whatever else it waited on the
	// machine only adds to that.
	for i := 1; i < 5; i++ {
		gap := starts[i].Sub(starts[i-1])
		if want := 30*time.Millisecond + minBackoff<<(i-1); gap < want {
			t.Errorf("start %d came %v after the previous one, want at least %v", i+1, gap, want)
		}
	}
	out := r.out.String()
	for _, backoff := range []string{"40ms", "80ms", "160ms", "320ms"} {
		want := []string{`msg="child exited, restarting"`, "proc=crasher", `status="exit status 3"`,
			"restart_in=" + backoff, `last_error="boom after 30ms"`}
		if len(lines(out, want...)) == 0 {
			t.Errorf("no log line with %q", want)
		}
	}
	// Each run is a new process whose output is re-emitted.
	pids := map[string]bool{}
	for _, l := range lines(out, "msg=running", "proc=crasher") {
		pids[attrs(l)["pid"]] = true
	}
	if len(pids) < 5 {
		t.Errorf("got output from %d distinct processes, want 5", len(pids))
	}
}

// A child that ran at least MaxBackoff restarts after MinBackoff again.
func TestRun_BackoffReset(t *testing.T) {
	bin := helperBinary(t)
	file := eventsFile(t)
	r := start(t, &Supervisor{
		Children: []Child{{Name: "slow", Path: bin,
			Env: helperChildEnv("crash", helperFile+"="+file, helperName+"=slow", helperMS+"=120")}},
		StartupWindow: 10 * time.Millisecond,
		MinBackoff:    20 * time.Millisecond,
		MaxBackoff:    100 * time.Millisecond,
	})
	waitFor(t, 30*time.Second, "4 starts", func() bool { return len(readEvents(t, file)) >= 4 })
	r.stop(t)
	exits := lines(r.out.String(), `msg="child exited, restarting"`)
	if len(exits) < 3 {
		t.Fatalf("got %d restarts logged, want 3", len(exits))
	}
	for _, l := range exits {
		if !strings.Contains(l, "restart_in=20ms") {
			t.Errorf("got %q, want restart_in=20ms after a run longer than MaxBackoff", l)
		}
	}
}

// A child that cannot start makes Run stop the others and return the
// child's own error line.
func TestRun_FatalStart(t *testing.T) {
	bin := helperBinary(t)
	file := eventsFile(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out testenv.Buffer
	s := &Supervisor{
		Children: []Child{
			{Name: "apiserver", Path: bin, Env: helperChildEnv("term", helperFile+"="+file, helperName+"=apiserver")},
			{Name: "capturer", Path: bin, Env: helperChildEnv("fail", helperFile+"="+file, helperName+"=capturer")},
		},
		Stderr:        &out,
		StartupWindow: 5 * time.Second,
		MinBackoff:    10 * time.Millisecond,
		MaxBackoff:    20 * time.Millisecond,
	}
	err := s.Run(ctx)
	defer func() {
		if t.Failed() {
			t.Logf("supervisor output:\n%s", out.String())
		}
	}()
	var ce *ChildError
	if !errors.As(err, &ce) {
		t.Fatalf("got error %v, want a *ChildError", err)
	}
	if got, want := err.Error(), "capturer: open eth9: no such device"; got != want {
		t.Errorf("got error %q, want %q", got, want)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("got error %#v, want it to wrap exit status 1", ce.Err)
	}
	starts := 0
	for _, e := range readEvents(t, file) {
		if e.what == "start" && e.name == "capturer" {
			starts++
		}
	}
	if starts != DefaultMaxFailedStarts {
		t.Errorf("capturer started %d times, want %d", starts, DefaultMaxFailedStarts)
	}
	if len(lines(out.String(), `msg="child stopped"`, "proc=apiserver")) != 1 {
		t.Errorf("the API server was not stopped")
	}

	t.Run("missing binary", func(t *testing.T) {
		s := &Supervisor{
			Children:   []Child{{Name: "capturer", Path: filepath.Join(t.TempDir(), "lightshark-capturer")}},
			Stderr:     &out,
			MinBackoff: time.Millisecond,
			MaxBackoff: time.Millisecond,
		}
		err := s.Run(ctx)
		if !errors.As(err, &ce) || !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "capturer: ") {
			t.Errorf("got %v, want a *ChildError naming the capturer and a missing file", err)
		}
	})
}

// At shutdown the last child stops first, and the one before it is
// signalled only once it has exited.
func TestRun_StopOrder(t *testing.T) {
	bin := helperBinary(t)
	file := eventsFile(t)
	child := func(name string) Child {
		return Child{Name: name, Path: bin,
			Env: helperChildEnv("term", helperFile+"="+file, helperName+"="+name, helperMS+"=150")}
	}
	r := start(t, &Supervisor{Children: []Child{child("apiserver"), child("capturer")}})
	waitFor(t, 20*time.Second, "both children ready", func() bool {
		evs := readEvents(t, file)
		return hasEvent(evs, "ready", "apiserver") && hasEvent(evs, "ready", "capturer")
	})
	if err := r.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	var got []string
	var last time.Time
	for _, e := range readEvents(t, file) {
		if e.what == "ready" {
			continue
		}
		got = append(got, e.what+" "+e.name)
		if e.at.Before(last) {
			t.Errorf("events out of time order: %v", readEvents(t, file))
		}
		last = e.at
	}
	want := []string{"term capturer", "exit capturer", "term apiserver", "exit apiserver"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got events %q, want %q", got, want)
	}
}

// A OneShot child that exits 0 is not restarted; the others keep running
// until the stop.
func TestRun_OneShot(t *testing.T) {
	bin := helperBinary(t)
	file := eventsFile(t)
	r := start(t, &Supervisor{Children: []Child{
		{Name: "server", Path: bin, Env: helperChildEnv("term", helperFile+"="+file, helperName+"=server", helperMS+"=10")},
		{Name: "import", Path: bin, OneShot: true, Env: helperChildEnv("work", helperFile+"="+file, helperName+"=import", helperMS+"=50")},
	}, MinBackoff: 10 * time.Millisecond})
	waitFor(t, 20*time.Second, "the one-shot child to finish", func() bool {
		return len(lines(r.out.String(), `msg="child finished"`, "proc=import")) == 1
	})
	time.Sleep(300 * time.Millisecond) // time for a wrongful restart
	if err := r.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	starts := 0
	for _, e := range readEvents(t, file) {
		if e.name == "import" && e.what == "start" {
			starts++
		}
	}
	if starts != 1 || len(lines(r.out.String(), "restarting", "proc=import")) != 0 {
		t.Errorf("the one-shot child started %d times:\n%s", starts, r.out.String())
	}
	if !hasEvent(readEvents(t, file), "term", "server") {
		t.Errorf("the server was not stopped at the end:\n%s", r.out.String())
	}
}

// A child given the supervisor's standard input reads it, and is never
// restarted, since what it read is gone: failing after its start-up it is
// logged and the others go on; failing within it, it ends Run.
func TestRun_Stdin(t *testing.T) {
	bin := helperBinary(t)
	file := eventsFile(t)
	stdin := func(data string) *os.File {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		go func() {
			io.WriteString(w, data)
			w.Close()
		}()
		return r
	}
	r := start(t, &Supervisor{Children: []Child{
		{Name: "server", Path: bin, Env: helperChildEnv("term", helperFile+"="+file, helperName+"=server", helperMS+"=10")},
		{Name: "stream", Path: bin, Stdin: stdin("hello stream"), Env: helperChildEnv("stdin", helperFile+"="+file, helperName+"=stream", helperMS+"=200")},
	}, MinBackoff: 10 * time.Millisecond, StartupWindow: 50 * time.Millisecond})
	waitFor(t, 20*time.Second, "the stream child's exit", func() bool {
		return len(lines(r.out.String(), `msg="child exited, not restarting: it read its standard input"`, "proc=stream")) == 1
	})
	time.Sleep(300 * time.Millisecond) // time for a wrongful restart
	if err := r.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	reads := 0
	for _, e := range readEvents(t, file) {
		if e.name == "stream" && strings.HasPrefix(e.what, "read-") {
			reads++
			if e.what != "read-12" {
				t.Errorf("the child read %s, want read-12", e.what)
			}
		}
	}
	if reads != 1 || len(lines(r.out.String(), `msg="child exited, restarting"`, "proc=stream")) != 0 {
		t.Errorf("the stream child started %d times:\n%s", reads, r.out.String())
	}

	// Failing at once: Run ends with the child's error.
	s := &Supervisor{Children: []Child{
		{Name: "stream", Path: bin, Stdin: stdin(""), Env: helperChildEnv("fail")},
	}, MinBackoff: 10 * time.Millisecond, Stderr: io.Discard}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ce *ChildError
	if err := s.Run(ctx); !errors.As(err, &ce) || ce.Name != "stream" {
		t.Errorf("Run with a stream child that fails at once: %v, want its *ChildError", err)
	}
}

// A child that ignores SIGTERM gets SIGKILL after StopTimeout.
func TestRun_StopTimeout(t *testing.T) {
	bin := helperBinary(t)
	file := eventsFile(t)
	const timeout = 300 * time.Millisecond
	r := start(t, &Supervisor{
		Children:    []Child{{Name: "stubborn", Path: bin, Env: helperChildEnv("stubborn", helperFile+"="+file, helperName+"=stubborn")}},
		StopTimeout: timeout,
	})
	waitFor(t, 20*time.Second, "the child ready", func() bool { return hasEvent(readEvents(t, file), "ready", "stubborn") })
	started := lines(r.out.String(), `msg="child started"`, "proc=stubborn")
	if len(started) != 1 {
		t.Fatalf("got %d start lines, want 1", len(started))
	}
	pid, _ := strconv.Atoi(attrs(started[0])["pid"])
	t0 := time.Now()
	if err := r.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	if took := time.Since(t0); took < timeout {
		t.Errorf("Run returned %v after cancel, before the stop timeout %v", took, timeout)
	}
	if len(lines(r.out.String(), `msg="child did not stop in time, killing it"`, "proc=stubborn", "signal=SIGKILL")) != 1 {
		t.Errorf("the kill is not logged")
	}
	if pid == 0 || alive(pid) {
		t.Errorf("child %d is alive after Run returned", pid)
	}
}

// Child lines are re-emitted with proc=NAME in the chosen format, and
// every line on Stderr is in that format.
func TestRun_LogAttribution(t *testing.T) {
	bin := helperBinary(t)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			file := eventsFile(t)
			r := start(t, &Supervisor{
				Children:  []Child{{Name: "app", Path: bin, Env: helperChildEnv("logs", helperFile+"="+file, helperName+"=app")}},
				LogFormat: format,
			})
			waitFor(t, 20*time.Second, "the child's four lines", func() bool {
				return len(lines(r.out.String(), "app", "some plain output")) == 1 &&
					len(lines(r.out.String(), "app", "plain error text")) == 1 &&
					len(lines(r.out.String(), "app", "disk slow")) == 1 &&
					len(lines(r.out.String(), "app", "hello")) == 1
			})
			if err := r.stop(t); err != nil {
				t.Errorf("Run: %v", err)
			}
			out := r.out.String()
			if format == "text" {
				for _, want := range []string{
					`time=2026-01-02T03:04:05.000Z level=WARN msg="disk slow" path="/var/x y" n=3 mode=0660 proc=app`,
					`time=2026-01-02T03:04:05Z level=INFO msg=hello n=3 ok=true peer="{\"uid\":1}" proc=app`,
				} {
					if len(lines(out, want)) != 1 {
						t.Errorf("no line %s", want)
					}
				}
				for _, want := range []string{
					`level=ERROR msg="lightshark-x: plain error text" proc=app`,
					`level=INFO msg="some plain output" proc=app`,
				} {
					if l := lines(out, want); len(l) != 1 || !strings.HasPrefix(l[0], "time=") || !strings.HasSuffix(l[0], want) {
						t.Errorf("got %q, want one line time=… %s", l, want)
					}
				}
				for _, l := range lines(out) {
					if !strings.HasPrefix(l, "time=") {
						t.Errorf("line not in logfmt: %q", l)
					}
				}
				return
			}
			for _, want := range []string{
				`{"time":"2026-01-02T03:04:05.000Z","level":"WARN","msg":"disk slow","path":"/var/x y","n":3,"mode":"0660","proc":"app"}`,
				`{"time":"2026-01-02T03:04:05Z","level":"INFO","msg":"hello","n":3,"ok":true,"peer":{"uid":1},"proc":"app"}`,
			} {
				if len(lines(out, want)) != 1 {
					t.Errorf("no line %s", want)
				}
			}
			wrapped := map[string]string{"lightshark-x: plain error text": "ERROR", "some plain output": "INFO"}
			for _, l := range lines(out) {
				var rec map[string]any
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Errorf("line not JSON: %q", l)
					continue
				}
				if level, ok := wrapped[fmt.Sprint(rec["msg"])]; ok {
					delete(wrapped, fmt.Sprint(rec["msg"]))
					if rec["level"] != level || rec["proc"] != "app" || rec["time"] == nil {
						t.Errorf("got %s, want a record with time, level %s and proc app", l, level)
					}
				}
			}
			if len(wrapped) != 0 {
				t.Errorf("no record for the plain lines %q", wrapped)
			}
		})
	}
}

// A huge line is cut to MaxLineBytes; the lines after it are whole.
func TestRun_HugeLine(t *testing.T) {
	bin := helperBinary(t)
	file := eventsFile(t)
	r := start(t, &Supervisor{
		Children:     []Child{{Name: "app", Path: bin, Env: helperChildEnv("huge", helperFile+"="+file, helperName+"=app")}},
		MaxLineBytes: 1024,
	})
	waitFor(t, 20*time.Second, "the line after the huge one", func() bool {
		return len(lines(r.out.String(), "msg=after proc=app")) == 1
	})
	r.stop(t)
	cut := lines(r.out.String(), "truncated_bytes=", "proc=app")
	if len(cut) != 1 {
		t.Fatalf("got %d truncated lines, want 1", len(cut))
	}
	if want := fmt.Sprint("truncated_bytes=", 1<<20-1024); !strings.Contains(cut[0], want) || len(cut[0]) > 1024+200 {
		t.Errorf("got a line of %d bytes, want about 1024 with %s", len(cut[0]), want)
	}
	for _, l := range lines(r.out.String()) {
		if len(l) > 1024+200 {
			t.Errorf("got a line of %d bytes", len(l))
		}
	}
}

// Children die with the supervisor, even when it is killed with SIGKILL.
func TestRun_SupervisorKilled(t *testing.T) {
	bin := helperBinary(t)
	file := eventsFile(t)
	var out testenv.Buffer
	cmd := exec.Command(bin)
	cmd.Env = helperChildEnv("supervise", helperChild+"=sleep", helperFile+"="+file)
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	var pid int
	t.Cleanup(func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if pid != 0 && alive(pid) {
			unix.Kill(pid, unix.SIGKILL)
		}
		if t.Failed() {
			t.Logf("supervisor output:\n%s", out.String())
		}
	})
	pid = childPid(t, file)
	if !alive(pid) {
		t.Fatalf("child %d is not running", pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waited = true
	waitFor(t, 10*time.Second, fmt.Sprintf("child %d to die with its supervisor", pid), func() bool { return !alive(pid) })
}

// childPid waits for the pid a "sleep" helper writes to the events file.
func childPid(t *testing.T, file string) int {
	t.Helper()
	var pid int
	waitFor(t, 20*time.Second, "the child's pid", func() bool {
		for _, e := range readEvents(t, file) {
			if p, ok := strings.CutPrefix(e.what, "pid-"); ok {
				pid, _ = strconv.Atoi(p)
				return true
			}
		}
		return false
	})
	return pid
}

// The parent-death signal fires when the thread that started the child
// exits (go.dev/issue/27505), and a goroutine that returns while locked to
// its thread ends the thread. While the goroutine that started the child
// waits, other goroutines lock threads and return: none of them may be
// the thread that started the child.
func TestRun_ThreadExit(t *testing.T) {
	bin := helperBinary(t)
	file := eventsFile(t)
	var churn sync.Once
	s := &Supervisor{
		Children: []Child{{Name: "child", Path: bin, Env: helperChildEnv("sleep", helperFile+"="+file, helperName+"=child")}},
		afterStart: func() {
			churn.Do(func() {
				// One after the other, so that the runtime picks idle
				// threads for them (the starting one, were it idle).
				for range 64 {
					var wg sync.WaitGroup
					wg.Add(1)
					go func() {
						defer wg.Done()
						runtime.LockOSThread()
					}()
					wg.Wait()
				}
			})
		},
	}
	r := start(t, s)
	pid := childPid(t, file)
	t.Cleanup(func() {
		if alive(pid) {
			unix.Kill(pid, unix.SIGKILL)
		}
	})
	// The signal is immediate: a short look suffices.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			t.Fatalf("child %d died when threads of the supervisor exited", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	if l := lines(r.out.String(), "child exited"); len(l) != 0 {
		t.Errorf("got %q, want no exit before the stop", l)
	}
}

// Run refuses an invalid Supervisor before starting anything.
func TestRun_Invalid(t *testing.T) {
	bin := helperBinary(t)
	ok := Child{Name: "a", Path: bin, Env: helperChildEnv("sleep")}
	tests := []struct {
		name string
		s    Supervisor
		want string
	}{
		{"no child", Supervisor{}, "no child to run"},
		{"no name", Supervisor{Children: []Child{{Path: bin}}}, "no name"},
		{"no path", Supervisor{Children: []Child{{Name: "a"}}}, "a: no path"},
		{"same name", Supervisor{Children: []Child{ok, ok}}, `two children named "a"`},
		{"log format", Supervisor{Children: []Child{ok}, LogFormat: "xml"}, `log format "xml" is not text or json`},
		{"backoff", Supervisor{Children: []Child{ok}, MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
		{"no such cap", Supervisor{Children: []Child{{Name: "a", Path: bin, AmbientCaps: []uintptr{99}}}}, "no such capability"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out testenv.Buffer
			tt.s.Stderr = &out
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tt.s.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error with %q", err, tt.want)
			}
			if out.String() != "" {
				t.Errorf("got output %q, want none", out.String())
			}
		})
	}
}

// A cancelled context starts nothing.
func TestRun_Cancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out testenv.Buffer
	s := &Supervisor{Children: []Child{{Name: "a", Path: helperBinary(t), Env: helperChildEnv("sleep")}}, Stderr: &out}
	if err := s.Run(ctx); err != nil || out.String() != "" {
		t.Errorf("got %v and output %q, want nil and nothing started", err, out.String())
	}
}

// The socket directory lets the API server's uid create its socket and
// the capturer's uid connect to it, and no other uid.
func TestPrepareSocketDir(t *testing.T) {
	base, err := os.MkdirTemp("", "supervisor-socket-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("own user", func(t *testing.T) {
		dir := filepath.Join(base, "own", "run")
		for range 2 { // the second time finds it
			if err := PrepareSocketDir(dir, -1, -1, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if fi, err := os.Stat(dir); err != nil || fi.Mode() != os.ModeDir|0o700 {
			t.Errorf("got %v (%v), want a directory with mode 0700", fi.Mode(), err)
		}
	})
	t.Run("symlink refused", func(t *testing.T) {
		target := filepath.Join(base, "target")
		os.Mkdir(target, 0o700)
		link := filepath.Join(base, "link")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		err := PrepareSocketDir(link, -1, -1, 0o777)
		if err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("got %v, want an error about the symbolic link", err)
		}
		if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o700 {
			t.Errorf("the link's target became %v", fi.Mode())
		}
	})
	t.Run("shared between uids", func(t *testing.T) {
		testenv.RequireRoot(t)
		bin := helperBinary(t)
		const apiUID, capturerUID, otherUID = 65532, 65534, 65533
		dir := filepath.Join(base, "run", "lightshark")
		if err := PrepareSocketDir(dir, apiUID, capturerUID, 0o750|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != apiUID || st.Gid != capturerUID || fi.Mode() != os.ModeDir|os.ModeSetgid|0o750 {
			t.Errorf("got %d:%d %v, want %d:%d dgrwxr-x---", st.Uid, st.Gid, fi.Mode(), apiUID, capturerUID)
		}
		sock := filepath.Join(dir, "ipc.sock")
		as := func(uid int, mode string) *exec.Cmd {
			cmd := exec.Command(bin)
			cmd.Dir = "/"
			cmd.Env = helperChildEnv(mode, helperFile+"="+sock)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
			cmd.WaitDelay = 10 * time.Second
			return cmd
		}
		srv := as(apiUID, "listen")
		srvOut, err := srv.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var srvErr testenv.Buffer
		srv.Stderr = &srvErr
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			srv.Process.Kill()
			srv.Wait()
		})
		if line, err := bufio.NewReader(srvOut).ReadString('\n'); line != "listening\n" {
			t.Fatalf("listener: %q, %v, stderr %q", line, err, srvErr.String())
		}
		if out, err := as(otherUID, "dial").CombinedOutput(); err == nil || !strings.Contains(string(out), "permission denied") {
			t.Errorf("uid %d: got %v %q, want permission denied", otherUID, err, out)
		}
		if out, err := as(capturerUID, "dial").CombinedOutput(); err != nil {
			t.Errorf("uid %d: %v %s, want it connected", capturerUID, err, out)
		}
		if err := srv.Wait(); err != nil {
			t.Errorf("listener: %v %s", err, srvErr.String())
		}
	})
}

func TestFindBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	onPath := filepath.Join(dir, "lightshark-test-tool")
	if err := os.WriteFile(onPath, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "not-executable"), nil, 0o644)
	t.Setenv("PATH", dir)

	if got, err := FindBinary(filepath.Base(exe)); err != nil || got != exe {
		t.Errorf("beside the executable: got %q, %v; want %q", got, err, exe)
	}
	if got, err := FindBinary("lightshark-test-tool"); err != nil || got != onPath {
		t.Errorf("in $PATH: got %q, %v; want %q", got, err, onPath)
	}
	_, err = FindBinary("not-executable")
	if want := fmt.Sprintf("not-executable not found beside %s nor in $PATH (%s)", exe, dir); err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestBaseEnv(t *testing.T) {
	t.Setenv("PATH", "/x/bin")
	t.Setenv("GOGC", "50")
	t.Setenv("TZ", "UTC")
	t.Setenv("GOMEMLIMIT", "18MiB")
	t.Setenv("LIGHTSHARK_API_TOKEN", "secret")
	got := strings.Join(BaseEnv(), " ")
	for _, want := range []string{"PATH=/x/bin", "GOGC=50", "TZ=UTC"} {
		if !strings.Contains(got, want) {
			t.Errorf("got %q, want %s", got, want)
		}
	}
	for _, not := range []string{"GOMEMLIMIT", "LIGHTSHARK"} {
		if strings.Contains(got, not) {
			t.Errorf("got %q, want no %s", got, not)
		}
	}
}
