package dockertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestComposeSidecar runs deploy/docker-compose/sidecar.yml around the demo
// server and checks that the API reports exactly the client's connections
// with tcpdump's counts, that the capturer ends unprivileged and the API
// server never had a capability, and that killing or restarting either
// container loses nothing that was acknowledged (nor, here, anything at
// all: the capturer resends what the API server had not committed).
func TestComposeSidecar(t *testing.T) {
	requireDocker(t)
	p := newProject(t, "sidecar")
	p.mustCompose("up", "-d")
	p.waitCapturing()
	checkLoopbackOnly(t, p.container("apiserver"))
	td := startTcpdump(t, p.pid("target"))

	// 1. Traffic, then the flows.
	all := p.runClient(50)
	p.expectFlows(all, td)

	capPid, apiPid := p.pid("capturer"), p.pid("apiserver")
	cs := mustStatus(t, capPid)
	checkDropped(t, "capturer", cs)
	if cs.Gid[0] != 65532 {
		t.Errorf("capturer gid %v, want 65532 (the API server's group, to reach its socket)", cs.Gid)
	}
	if cs.CapBnd != capNetRaw|capSetuid|capSetgid {
		t.Errorf("capturer container bounding set %x, want NET_RAW|SETUID|SETGID", cs.CapBnd)
	}
	as := mustStatus(t, apiPid)
	checkUnprivileged(t, "apiserver", as, true)
	for what, s := range map[string]procStatus{"capturer": cs, "apiserver": as} {
		if s.Seccomp != 2 {
			t.Errorf("%s: seccomp mode %d, want 2 (Docker's default filter)", what, s.Seccomp)
		}
	}
	logMemory(t, map[string]int{"capturer": capPid, "apiserver": apiPid})

	// 2. The API server is killed (SIGKILL) and stays down while the
	// client makes more requests; the capturer keeps its batches and
	// resends them when the API server is back.
	if _, err := docker(context.Background(), nil, "kill", "-s", "KILL", p.container("apiserver")); err != nil {
		t.Fatal(err)
	}
	all = append(all, p.runClient(10)...)
	time.Sleep(2 * time.Second) // two flush intervals without a server
	p.mustCompose("start", "apiserver")
	p.waitCapturing()
	p.expectFlows(all, td)

	// 3. The capturer is restarted (SIGTERM) right after traffic: it sends
	// its last batch before exiting, then captures again, unprivileged.
	all = append(all, p.runClient(10)...)
	p.mustCompose("restart", "-t", "10", "capturer")
	p.expectFlows(all, td)
	checkDropped(t, "capturer after a restart", mustStatus(t, p.pid("capturer")))

	// 4. The capturer is killed (SIGKILL, from the host): its restart
	// policy brings it back, and nothing committed before is lost.
	old := p.pid("capturer")
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitNewPid(t, p, "capturer", old)
	p.waitCapturing()
	all = append(all, p.runClient(5)...)
	p.expectFlows(all, td)
	checkDropped(t, "capturer after SIGKILL and restart", mustStatus(t, p.pid("capturer")))

	// 5. A burst of connections within the compose file's memory limits:
	// nothing is OOM-killed; the memory figures of HOW_TO_USE.md.
	p.runClient(loadConnections)
	time.Sleep(3 * time.Second)
	for _, service := range []string{"capturer", "apiserver"} {
		out, err := docker(context.Background(), nil, "inspect", "-f", "{{.State.OOMKilled}} {{.HostConfig.Memory}}", p.container(service))
		if err != nil || !strings.HasPrefix(out, "false ") || strings.TrimSpace(out) == "false 0" {
			t.Errorf("%s: OOMKilled and memory limit: %q %v, want false and a limit", service, out, err)
		}
	}
	p.waitCapturing()
	logMemory(t, map[string]int{"capturer": p.pid("capturer"), "apiserver": p.pid("apiserver")})
}

// loadConnections is the size of the burst that the memory figures are
// measured after.
const loadConnections = 2000

// TestComposeSupervisor runs deploy/docker-compose/supervisor.yml: one
// container, lightshark-mini splitting the privileges inside it.
func TestComposeSupervisor(t *testing.T) {
	requireDocker(t)
	p := newProject(t, "supervisor")
	p.mustCompose("up", "-d")
	p.waitCapturing()
	td := startTcpdump(t, p.pid("target"))

	all := p.runClient(20)
	p.expectFlows(all, td)

	root := p.pid("lightshark")
	rs := mustStatus(t, root)
	t.Logf("supervisor (pid 1 of its container): %s uid %v CapEff %x CapBnd %x NoNewPrivs %d",
		rs.Name, rs.Uid, rs.CapEff, rs.CapBnd, rs.NoNewPrivs)
	if rs.CapBnd != capNetRaw|capSetuid|capSetgid|capChown {
		t.Errorf("supervisor container bounding set %x, want NET_RAW|SETUID|SETGID|CHOWN", rs.CapBnd)
	}
	capPid, apiPid := childrenByName(t, root)
	checkDropped(t, "capturer child", mustStatus(t, capPid))
	checkUnprivileged(t, "apiserver child", mustStatus(t, apiPid), false)
	logMemory(t, map[string]int{"supervisor": root, "capturer child": capPid, "apiserver child": apiPid})

	// A restart of the container keeps the history (the database volume)
	// and captures again.
	p.mustCompose("restart", "-t", "10", "lightshark")
	p.waitCapturing()
	all = append(all, p.runClient(5)...)
	p.expectFlows(all, td)
	root = p.pid("lightshark")
	capPid, apiPid = childrenByName(t, root)
	checkDropped(t, "capturer child after a restart", mustStatus(t, capPid))
	checkUnprivileged(t, "apiserver child after a restart", mustStatus(t, apiPid), false)

	// The same burst as the sidecar's, within the container's limit.
	p.runClient(loadConnections)
	time.Sleep(3 * time.Second)
	if out, err := docker(context.Background(), nil, "inspect", "-f", "{{.State.OOMKilled}} {{.RestartCount}}", p.container("lightshark")); err != nil || strings.TrimSpace(out) != "false 0" {
		t.Errorf("lightshark: OOMKilled and restarts %q %v, want false 0", out, err)
	}
	p.waitCapturing()
	logMemory(t, map[string]int{"supervisor": root, "capturer child": capPid, "apiserver child": apiPid})
}

// TestComposeHardened runs deploy/docker-compose/hardened.yml: the API
// answers 401 without the token (read from a secret file) and serves with
// it; limits are in force; the token is in no command line or environment.
func TestComposeHardened(t *testing.T) {
	requireDocker(t)
	var b [24]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	tokenFile := filepath.Join(t.TempDir(), "api-token")
	// As HOW_TO_USE.md says: mode 0640, group 65532 (the API server's).
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tokenFile, 0, 65532); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokenFile, 0o640); err != nil {
		t.Fatal(err)
	}
	p := newProject(t, "hardened", "LIGHTSHARK_API_TOKEN_FILE="+tokenFile)
	p.token = token
	p.mustCompose("up", "-d")
	p.waitCapturing()
	checkLoopbackOnly(t, p.container("apiserver"))

	for _, path := range []string{"/api/flows", "/api/stats", "/api/live", "/api/history", "/metrics"} {
		for _, tok := range []string{"", "wrong-" + token} {
			if code, body, err := p.apiWithToken(path, tok); err != nil || code != http.StatusUnauthorized {
				t.Errorf("GET %s with token %q: %d %s %v, want 401", path, tok, code, body, err)
			}
		}
		if code, body, err := p.api(path); err != nil || code != http.StatusOK {
			t.Errorf("GET %s with the token: %d %s %v, want 200", path, code, body, err)
		}
	}
	if code, _, err := p.apiWithToken("/api/health", ""); err != nil || code != http.StatusOK {
		t.Errorf("GET /api/health without a token: %d %v, want 200 (probes)", code, err)
	}

	td := startTcpdump(t, p.pid("target"))
	p.expectFlows(p.runClient(10), td)

	capPid, apiPid := p.pid("capturer"), p.pid("apiserver")
	checkDropped(t, "capturer", mustStatus(t, capPid))
	checkUnprivileged(t, "apiserver", mustStatus(t, apiPid), true)
	for what, pid := range map[string]int{"capturer": capPid, "apiserver": apiPid} {
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), token) {
				t.Errorf("%s: the token is in /proc/PID/%s", what, f)
			}
		}
	}
	for service, want := range map[string]hostConfig{
		"capturer":  {Memory: 24 << 20, PidsLimit: 32, NanoCpus: 5e8, ReadonlyRootfs: true},
		"apiserver": {Memory: 32 << 20, PidsLimit: 32, NanoCpus: 5e8, ReadonlyRootfs: true},
	} {
		got := inspectHost(t, p.container(service))
		if got.Memory != want.Memory || got.PidsLimit != want.PidsLimit || got.NanoCpus != want.NanoCpus || !got.ReadonlyRootfs {
			t.Errorf("%s: %+v, want %+v", service, got, want)
		}
		if strings.Join(got.CapDrop, ",") != "ALL" || !strings.Contains(strings.Join(got.SecurityOpt, ","), "no-new-privileges") {
			t.Errorf("%s: cap_drop %v security_opt %v", service, got.CapDrop, got.SecurityOpt)
		}
	}
	logMemory(t, map[string]int{"capturer": capPid, "apiserver": apiPid})
}

type hostConfig struct {
	Memory         int64
	PidsLimit      int64
	NanoCpus       int64
	ReadonlyRootfs bool
	CapDrop        []string
	SecurityOpt    []string
	PortBindings   map[string][]struct{ HostIp, HostPort string }
}

func inspectHost(t *testing.T, id string) hostConfig {
	t.Helper()
	out, err := docker(context.Background(), nil, "inspect", "-f", "{{json .HostConfig}}", id)
	if err != nil {
		t.Fatal(err)
	}
	var h hostConfig
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return h
}

// checkLoopbackOnly asserts that every port the container publishes is
// bound to the host's loopback address only.
func checkLoopbackOnly(t *testing.T, id string) {
	t.Helper()
	h := inspectHost(t, id)
	if len(h.PortBindings) == 0 {
		t.Errorf("the API container publishes no port")
	}
	for port, bs := range h.PortBindings {
		for _, b := range bs {
			if b.HostIp != "127.0.0.1" {
				t.Errorf("port %s published on %q, want 127.0.0.1 only", port, b.HostIp)
			}
		}
	}
}

// childrenByName finds the capturer and API server among the children of
// the supervisor.
func childrenByName(t *testing.T, parent int) (capturer, apiserver int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		capturer, apiserver = 0, 0
		for _, c := range children(parent) {
			s, err := readStatus(c)
			if err != nil {
				continue
			}
			// comm is cut to 15 bytes.
			switch {
			case strings.HasPrefix("lightshark-capturer", s.Name):
				capturer = c
			case strings.HasPrefix("lightshark-apiserver", s.Name):
				apiserver = c
			}
		}
		if capturer != 0 && apiserver != 0 {
			return capturer, apiserver
		}
	}
	t.Fatalf("pid %d has no lightshark-capturer and lightshark-apiserver children (%v)", parent, children(parent))
	return 0, 0
}

// waitNewPid waits until the service runs a process other than old.
func waitNewPid(t *testing.T, p *project, service string, old int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if pid := p.pid(service); pid != old {
			return
		}
	}
	t.Fatalf("%s was not restarted after SIGKILL", service)
}

func logMemory(t *testing.T, pids map[string]int) {
	t.Helper()
	for what, pid := range pids {
		m, err := containerMemory(pid)
		if err != nil {
			t.Logf("memory of %s: %v", what, err)
			continue
		}
		t.Logf("memory of %s: %s", what, m)
	}
}
