package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// binDir holds the three binaries, built once: lightshark-mini finds the
// other two beside itself.
var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "lightshark-mini-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		for name, pkg := range map[string]string{
			"lightshark-mini": ".", "lightshark-capturer": "../capturer", "lightshark-apiserver": "../apiserver",
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", name, err, out)
				return 1
			}
		}
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

func mini(args ...string) *exec.Cmd {
	return exec.Command(filepath.Join(binDir, "lightshark-mini"), args...)
}

func runMini(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := mini(args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("lightshark-mini %q did not exit; stderr:\n%s", args, errb.String())
	}
	return out.String(), errb.String(), code
}

// printed reads --print-config output into key → value (as printed).
func printed(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kv, _, _ := strings.Cut(line, " #")
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			t.Fatalf("not a key: value line: %q", line)
		}
		m[k] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return m
}

// Every flag of the original tool (../shared/ORIGINAL.md), long and short,
// is accepted with its original meaning, and its YAML keys too.
func TestOriginalFlags(t *testing.T) {
	want := map[string]string{
		"interface": "eth9", "port": "8080", "db_path": "/data/t.db", "filter_port": "443",
		"filter_ip": "10.0.0.1", "filter_protocol": "TCP", "connection_timeout": "30",
		"data_retention_seconds": "3600", "sample_rate": "5", "aggregation_window_seconds": "60", "quiet": "true",
	}
	long := []string{"--interface", "eth9", "--port", "8080", "--db-path", "/data/t.db", "--filter-port", "443",
		"--filter-ip", "10.0.0.1", "--filter-protocol", "TCP", "--connection-timeout", "30", "--data-retention", "3600",
		"--sample-rate", "5", "--aggregation-window", "60", "--quiet"}
	short := []string{"-i", "eth9", "-p", "8080", "--db-path", "/data/t.db", "--filter-port", "443",
		"--filter-ip", "10.0.0.1", "--filter-protocol", "TCP", "--connection-timeout", "30", "--data-retention", "3600",
		"--sample-rate", "5", "--aggregation-window", "60", "-q"}
	yaml := filepath.Join(t.TempDir(), "original.yaml")
	os.WriteFile(yaml, []byte(`interface: eth9
port: 8080
db_path: /data/t.db
filter_port: 443
filter_ip: 10.0.0.1
filter_protocol: TCP
connection_timeout: 30
data_retention_seconds: 3600
sample_rate: 5
aggregation_window_seconds: 60
quiet: true
resolve_dns: true
`), 0o644)
	for name, args := range map[string][]string{
		"long": long, "short": short, "yaml -c": {"-c", yaml}, "yaml --config": {"--config", yaml},
	} {
		t.Run(name, func(t *testing.T) {
			out, stderr, code := runMini(t, append(args, "--print-config")...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			got := printed(t, out)
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		out, stderr, code := runMini(t, "--print-config")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		got := printed(t, out)
		for k, v := range map[string]string{"interface": "", "port": "3000", "db_path": "traffic.db",
			"connection_timeout": "60", "sample_rate": "1", "aggregation_window_seconds": "0", "quiet": "false"} {
			if got[k] != v {
				t.Errorf("default %s = %q, want the original's %q", k, got[k], v)
			}
		}
	})
}

func TestHelpAndVersion(t *testing.T) {
	out, _, code := runMini(t, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, want := range []string{"Capture:", "Capture filter (in the kernel):", "History (SQLite):", "HTTP API:",
		"Privilege split:", "--interface", "(default 3000)", "Examples:", "LIGHTSHARK_"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
	out, _, code = runMini(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "lightshark-mini ") || !strings.Contains(out, "commit") || !strings.Contains(out, "go1.") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}

// Bad input: one line naming the problem, exit 1, no stack trace.
func TestBadInput(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	dir := t.TempDir()
	unknownKey := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknownKey, []byte("port: 3000\nfilter_prot: udp\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no such interface", []string{"-i", "nosuchif0"}, `--interface: no interface "nosuchif0" (available: lo`},
		{"port in use", []string{"--listen", "127.0.0.1:" + busy}, "--listen: 127.0.0.1:" + busy + " is already in use"},
		{"unreadable config", []string{"-c", dir}, "config file " + dir},
		{"missing config", []string{"-c", filepath.Join(dir, "none.yaml")}, "no such file"},
		{"unknown key", []string{"-c", unknownKey}, "unknown.yaml:2: filter_prot: unknown key (did you mean filter_port?)"},
		{"bad filter", []string{"--filter-ip", "10.0.0.300"}, `--filter-ip: "10.0.0.300"`},
		{"bad flag", []string{"--no-such-flag"}, "unknown flag: --no-such-flag"},
		{"shared socket directory", []string{"--listen", "127.0.0.1:0", "--socket", filepath.Join(filepath.Dir(unknownKey), "ipc.sock")}, "holds other files (unknown.yaml)"},
		{"argument", []string{"eth0"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runMini(t, tt.args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 1 || len(lines) != 1 || !strings.Contains(stderr, tt.want) ||
				!strings.HasPrefix(stderr, "lightshark-mini: ") || strings.Contains(stderr, "goroutine") {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and one line with %q", code, stderr, tt.want)
			}
		})
	}
}

// The product as a user runs it: lightshark-mini -i IFACE as root in the
// watched namespace, real traffic, the split checked in /proc, each child
// killed in turn, and SIGTERM.
func TestLive(t *testing.T) {
	p := testenv.NetnsPair(t)
	for _, tool := range []string{"curl", "python3"} {
		testenv.RequireTool(t, tool)
	}
	dir := t.TempDir()
	// The API server's user creates the database in it.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	www := filepath.Join(dir, "www")
	os.Mkdir(www, 0o755)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello\n"), 0o644)
	p.StartCmd(t, p.Command(p.B, "python3", "-m", "http.server", "--bind", p.B4.String(), "--directory", www, "8080"))

	sock := filepath.Join(dir, "run", "ipc.sock")
	db := filepath.Join(dir, "data", "traffic.db")
	api := net.JoinHostPort(p.B4.String(), "3000")
	cmd := p.Command(p.B, filepath.Join(binDir, "lightshark-mini"), "-i", p.DevB, "--listen", api,
		"--db-path", db, "--socket", sock, "--flush-interval", "200ms")
	logs := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	p.StartCmd(t, cmd)
	pid := cmd.Process.Pid
	defer func() {
		if t.Failed() {
			t.Logf("lightshark-mini's log:\n%s", logs.String())
		}
	}()

	get := func(path string, v any) error {
		out, err := p.Command(p.A, "curl", "-sf", "--max-time", "2", "http://"+api+path).Output()
		if err != nil {
			return fmt.Errorf("GET %s: %v", path, err)
		}
		return json.Unmarshal(out, v)
	}
	waitFor(t, 15*time.Second, "the API", func() bool {
		var h map[string]any
		return get("/api/health", &h) == nil
	})
	waitFor(t, 10*time.Second, "the capturer to start", func() bool { return strings.Contains(logs.String(), "capture started") })

	// The split: each child's identity and capabilities.
	capPID, apiPID := child(t, pid, "lightshark-capt"), child(t, pid, "lightshark-apis")
	checkStatus(t, "capturer", capPID, "65534", "0000000000000000")
	checkStatus(t, "apiserver", apiPID, "65532", "0000000000000000")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 || st.Uid != 65532 || st.Gid != 65532 {
		t.Errorf("socket %s: mode %v owner %d:%d, want a socket 0660 owned by 65532:65532", sock, fi.Mode(), st.Uid, st.Gid)
	}

	requests := 0
	traffic := func(n int) {
		for range n {
			p.Exec(t, p.A, "curl", "-sf", "-o", "/dev/null", "http://"+net.JoinHostPort(p.B4.String(), "8080")+"/")
			requests++
		}
	}
	flowsSeen := func() int {
		var r struct {
			Flows []struct {
				DstPort int `json:"dst_port"`
			} `json:"flows"`
		}
		if get("/api/flows?port=8080&limit=1000", &r) != nil {
			return -1
		}
		return len(r.Flows)
	}
	traffic(10)
	waitFor(t, 10*time.Second, "10 HTTP flows in /api/flows", func() bool { return flowsSeen() == requests })
	var live struct {
		Connections []struct {
			Connection string `json:"connection"`
		} `json:"connections"`
		TotalPackets int `json:"total_packets"`
	}
	if err := get("/api/live", &live); err != nil || live.TotalPackets == 0 {
		t.Errorf("/api/live: %v, %+v", err, live)
	}

	// kill -9 of each child in turn: restarted, and data flows again.
	for _, name := range []string{"lightshark-capt", "lightshark-apis"} {
		old := child(t, pid, name)
		syscall.Kill(old, syscall.SIGKILL)
		waitFor(t, 15*time.Second, name+" restarted", func() bool {
			n := findChild(pid, name)
			return n != 0 && n != old
		})
		waitFor(t, 15*time.Second, "the capturer to capture again", func() bool {
			var h struct {
				Status string `json:"status"`
			}
			return get("/api/health", &h) == nil && h.Status == "ok"
		})
		traffic(5)
		waitFor(t, 15*time.Second, fmt.Sprintf("%d HTTP flows after restarting %s", requests, name),
			func() bool { return flowsSeen() == requests })
	}
	checkStatus(t, "restarted capturer", child(t, pid, "lightshark-capt"), "65534", "0000000000000000")
	checkStatus(t, "restarted apiserver", child(t, pid, "lightshark-apis"), "65532", "0000000000000000")

	// SIGTERM right after the last traffic: exit 0 within 5 s, and the
	// last second is in SQLite.
	traffic(3)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := waitExit(cmd, 5*time.Second); err != nil {
		t.Fatalf("lightshark-mini after SIGTERM: %v", err)
	}
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	sdb, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var n int
	if err := sdb.QueryRow(`SELECT count(*) FROM flows WHERE dst_port = 8080`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != requests {
		t.Errorf("SQLite holds %d HTTP flows, want the %d requests made", n, requests)
	}
	var ok string
	if err := sdb.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Errorf("integrity_check: %q, %v", ok, err)
	}
}

// sharedTempDir is a temporary directory the children's unprivileged
// users may write in and reach.
func sharedTempDir(t *testing.T) string {
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Dir(dir), 0o755)
	return dir
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// checkStatus asserts a process's uid and effective, permitted and ambient
// capability sets.
func checkStatus(t *testing.T, name string, pid int, uid, caps string) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, want := range []string{"Uid:\t" + strings.Repeat(uid+"\t", 3) + uid, "CapEff:\t" + caps,
		"CapPrm:\t" + caps, "CapAmb:\t" + caps} {
		if !strings.Contains(string(status), want+"\n") {
			t.Errorf("%s (pid %d) /proc status lacks %q:\n%s", name, pid, want, status)
		}
	}
}

// findChild returns the pid of parent's child whose command name starts
// with comm (the kernel keeps 15 characters), or 0.
func findChild(parent int, comm string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(parent) && strings.HasPrefix(s[i+1:j], comm) {
			return pid
		}
	}
	return 0
}

func child(t *testing.T, parent int, comm string) int {
	t.Helper()
	var pid int
	waitFor(t, 10*time.Second, comm+" running", func() bool { pid = findChild(parent, comm); return pid != 0 })
	return pid
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitExit(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("did not exit within %v", d)
	}
}

// lightshark-mini --read FILE imports a capture and keeps serving it: as
// root with the split, and as an unprivileged user, which needs no
// capability for a file and is told what it runs without.
func TestImport(t *testing.T) {
	shared := testenv.SharedDir(t)
	testenv.RequireRoot(t)
	pcap := filepath.Join(shared, "pcaps", "conformance", "zeek-http-cooper-grill-dvwa.pcapng")
	oracle, err := exec.Command(filepath.Join(binDir, "lightshark-capturer"), "--read", pcap, "--output", "jsonl", "-q").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Count(string(oracle), "\n")
	data, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		cred  *syscall.Credential
		log   string // in the log
		stdin bool   // --read -, the file through a pipe
	}{
		{"root", nil, "privilege split", false},
		{"unprivileged", &syscall.Credential{Uid: 65534, Gid: 65534}, "not root: both processes run as this user", false},
		{"stream", nil, "privilege split", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := sharedTempDir(t)
			api := freeAddr(t)
			read := pcap
			if tt.stdin {
				read = "-"
			}
			cmd := mini("--read", read, "--listen", api, "--db-path", filepath.Join(dir, "traffic.db"),
				"--socket", filepath.Join(dir, "run", "ipc.sock"))
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tt.cred}
			if tt.stdin {
				cmd.Stdin = bytes.NewReader(data) // exec copies it through a pipe
			}
			logs := startLogged(t, cmd)
			var got int
			waitFor(t, 30*time.Second, fmt.Sprintf("the file's %d flows in /api/flows", want), func() bool {
				out, err := exec.Command("curl", "-sf", "http://"+api+"/api/flows?format=ndjson").Output()
				got = strings.Count(string(out), "\n")
				return err == nil && got == want
			})
			waitFor(t, 10*time.Second, "the import to finish", func() bool {
				return strings.Contains(logs.String(), `msg="child finished" component=supervisor proc=capturer`)
			})
			// Read to its end, the import is done: health is ok.
			if out, err := exec.Command("curl", "-s", "http://"+api+"/api/health").Output(); err != nil ||
				!strings.Contains(string(out), `"status":"ok"`) || !strings.Contains(string(out), `"finished":true`) {
				t.Errorf("/api/health after the import: %v %s", err, out)
			}
			if !strings.Contains(logs.String(), tt.log) {
				t.Errorf("the log does not say %q", tt.log)
			}
			time.Sleep(500 * time.Millisecond)
			if strings.Contains(logs.String(), "restarting") {
				t.Errorf("a child was restarted")
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err := waitExit(cmd, 5*time.Second); err != nil {
				t.Errorf("after SIGTERM: %v", err)
			}
		})
	}
}

// Started as a user without capabilities, with cap_net_raw set on the
// capturer's file (setcap), lightshark-mini captures live; without it, it
// stops at once and says what is missing.
func TestFileCapability(t *testing.T) {
	testenv.RequireRoot(t)
	setcap := testenv.RequireTool(t, "setcap")
	dir := sharedTempDir(t)
	for _, name := range []string{"lightshark-mini", "lightshark-capturer", "lightshark-apiserver"} {
		b, err := os.ReadFile(filepath.Join(binDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	start := func() (*exec.Cmd, *testenv.Buffer, string) {
		api := freeAddr(t)
		cmd := exec.Command(filepath.Join(dir, "lightshark-mini"), "-i", "lo", "--listen", api,
			"--db-path", filepath.Join(dir, "traffic.db"), "--socket", filepath.Join(dir, "run", "ipc.sock"))
		cmd.SysProcAttr = nobody
		logs := &testenv.Buffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, logs, api
	}

	cmd, logs, _ := start()
	if err := waitExit(cmd, 10*time.Second); err == nil || !strings.Contains(logs.String(), "live capture needs CAP_NET_RAW") {
		t.Errorf("without the capability: %v\n%s", err, logs.String())
	}

	if out, err := exec.Command(setcap, "cap_net_raw+ep", filepath.Join(dir, "lightshark-capturer")).CombinedOutput(); err != nil {
		t.Skipf("setcap: %v %s", err, out)
	}
	cmd, logs, api := start()
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	}()
	waitFor(t, 15*time.Second, "the capture to start", func() bool { return strings.Contains(logs.String(), "capture started") })
	waitFor(t, 10*time.Second, "the capturer connected", func() bool {
		out, err := exec.Command("curl", "-sf", "http://"+api+"/api/health").Output()
		return err == nil && strings.Contains(string(out), `"capturers_connected":1`)
	})
	capPID := child(t, cmd.Process.Pid, "lightshark-capt")
	checkStatus(t, "capturer", capPID, "65534", "0000000000000000")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := waitExit(cmd, 5*time.Second); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
}

// A second SIGINT exits at once (130), and the kernel takes the children
// with it (they get SIGKILL when their parent dies).
func TestSecondSignal(t *testing.T) {
	testenv.RequireRoot(t)
	dir := sharedTempDir(t)
	api := freeAddr(t)
	// The capturer waits for an API server that is not there, so a
	// first signal alone would take it seconds to give up its last batch.
	cmd := mini("-i", "lo", "--listen", api, "--db-path", filepath.Join(dir, "traffic.db"),
		"--socket", filepath.Join(dir, "run", "ipc.sock"))
	logs := startLogged(t, cmd)
	capPID := child(t, cmd.Process.Pid, "lightshark-capt")
	apiPID := child(t, cmd.Process.Pid, "lightshark-apis")
	waitFor(t, 10*time.Second, "the capture to start", func() bool { return strings.Contains(logs.String(), "capture started") })
	syscall.Kill(apiPID, syscall.SIGSTOP) // the capturer's last batch will wait for it
	defer syscall.Kill(apiPID, syscall.SIGCONT)
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	err := waitExit(cmd, 2*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("after two SIGINTs: %v, want exit 130 at once", err)
	}
	t.Logf("exited %v after the first signal", time.Since(start).Round(time.Millisecond))
	waitFor(t, 5*time.Second, "the children to die with it", func() bool {
		return syscall.Kill(capPID, 0) != nil && syscall.Kill(apiPID, 0) != nil
	})
}

// startLogged starts cmd with its output in the returned buffer; at the
// end of the test it kills cmd and, if the test failed, logs the output.
func startLogged(t *testing.T, cmd *exec.Cmd) *testenv.Buffer {
	t.Helper()
	logs := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	return logs
}
