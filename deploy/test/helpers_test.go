package dockertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

// project is one Docker Compose project: a shipped compose file plus the
// demo override (deploy/test/compose.demo.yml), under a unique name.
type project struct {
	t       *testing.T
	name    string
	files   []string
	env     []string
	apiPort int
	token   string
}

// newProject prepares a project of the shipped compose file
// deploy/docker-compose/NAME.yml with the demo workload as "target", the
// image built by setup and a free loopback port for the API. Cleanup
// prints the logs of a failed test and removes the containers, networks
// and volumes.
func newProject(t *testing.T, name string, env ...string) *project {
	t.Helper()
	var rnd [3]byte
	rand.Read(rnd[:])
	p := &project{
		t:    t,
		name: fmt.Sprintf("lsdt-%s-%s", name, hex.EncodeToString(rnd[:])),
		files: []string{
			filepath.Join(repoRoot, "deploy", "docker-compose", name+".yml"),
			filepath.Join(repoRoot, "deploy", "test", "compose.demo.yml"),
		},
		apiPort: freePort(t),
	}
	p.env = append([]string{
		"LIGHTSHARK_IMAGE=" + productImage,
		"LIGHTSHARK_DEMO_IMAGE=" + demoImage,
		"LIGHTSHARK_API_PORT=" + strconv.Itoa(p.apiPort),
		"COMPOSE_PROJECT_NAME=" + p.name,
	}, env...)
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := p.compose("logs", "--no-color", "--tail", "60"); err == nil {
				t.Logf("logs of %s:\n%s", p.name, out)
			}
		}
		if out, err := p.compose("down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	return p
}

func (p *project) compose(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := []string{"-p", p.name}
	for _, f := range p.files {
		full = append(full, "-f", f)
	}
	c := exec.CommandContext(ctx, composeBin, append(full, args...)...)
	c.Env = append(os.Environ(), p.env...)
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker-compose %s: %v", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func (p *project) mustCompose(args ...string) string {
	p.t.Helper()
	out, err := p.compose(args...)
	if err != nil {
		p.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// container returns the id of the service's container.
func (p *project) container(service string) string {
	p.t.Helper()
	id := strings.TrimSpace(p.mustCompose("ps", "-q", service))
	if id == "" {
		p.t.Fatalf("service %s has no container", service)
	}
	return id
}

// pid returns the host pid of the service container's first process,
// waiting (bounded) for it to run.
func (p *project) pid(service string) int {
	p.t.Helper()
	id := p.container(service)
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, err := docker(context.Background(), nil, "inspect", "-f", "{{.State.Pid}} {{.State.Status}}", id)
		last = strings.TrimSpace(out)
		if err != nil {
			last = err.Error()
			continue
		}
		f := strings.Fields(last)
		if len(f) == 2 && f[1] == "running" {
			if pid, _ := strconv.Atoi(f[0]); pid > 0 {
				return pid
			}
		}
	}
	p.t.Fatalf("service %s is not running: %s", service, last)
	return 0
}

// runClient makes n requests from a new client container on the project's
// network to the target's demo server and returns what it did.
func (p *project) runClient(n int) []clientResult {
	p.t.Helper()
	out := p.mustCompose("run", "--rm", "-T", "client", "get", "http://target:8080/", strconv.Itoa(n))
	return parseClient(p.t, out, n)
}

// parseClient reads the output of `lsdemo get URL n`.
func parseClient(t *testing.T, out string, n int) []clientResult {
	t.Helper()
	var res []clientResult
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue // compose's own messages
		}
		var r clientResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("client output %q: %v", line, err)
		}
		if r.Status != http.StatusOK || r.BodyBytes != 1200 {
			t.Fatalf("client request: %+v", r)
		}
		res = append(res, r)
	}
	if len(res) != n {
		t.Fatalf("client made %d requests, want %d:\n%s", len(res), n, out)
	}
	return res
}

// clientResult is one line of `lsdemo get`.
type clientResult struct {
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	Status    int    `json:"status"`
	BodyBytes int64  `json:"body_bytes"`
}

// api returns the body of GET path on the project's published API port
// (with the bearer token when the project has one) and its status.
func (p *project) api(path string) (int, []byte, error) {
	return p.apiWithToken(path, p.token)
}

func (p *project) apiWithToken(path, token string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", p.apiPort, path), nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// waitCapturing waits until /api/health answers and says a capturer is
// connected.
func (p *project) waitCapturing() {
	p.t.Helper()
	var last string
	for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		code, body, err := p.api("/api/health")
		if err != nil {
			last = err.Error()
			continue
		}
		last = fmt.Sprintf("%d %s", code, body)
		var h struct {
			CapturersConnected int `json:"capturers_connected"`
		}
		if code == http.StatusOK && json.Unmarshal(body, &h) == nil && h.CapturersConnected > 0 {
			return
		}
	}
	p.t.Fatalf("the API never reported a connected capturer; last /api/health: %s", last)
}

// apiFlow is the part of a flow record the tests compare.
type apiFlow struct {
	Proto           string `json:"proto"`
	SrcIP           string `json:"src_ip"`
	SrcPort         int    `json:"src_port"`
	DstIP           string `json:"dst_ip"`
	DstPort         int    `json:"dst_port"`
	PacketsSent     uint64 `json:"packets_sent"`
	BytesSent       uint64 `json:"bytes_sent"`
	PacketsReceived uint64 `json:"packets_received"`
	BytesReceived   uint64 `json:"bytes_received"`
	State           string `json:"state"`
}

func (f apiFlow) counts() dirCounts {
	return dirCounts{f.PacketsSent, f.BytesSent, f.PacketsReceived, f.BytesReceived}
}

// flows returns every flow the API has on the demo port, by originator
// endpoint ("ip:port").
func (p *project) flows() (map[string]apiFlow, error) {
	code, body, err := p.api("/api/flows?port=8080&limit=1000")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /api/flows: %d %s", code, body)
	}
	var page struct {
		Flows      []apiFlow `json:"flows"`
		NextCursor string    `json:"next_cursor"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("GET /api/flows: %v", err)
	}
	if page.NextCursor != "" {
		return nil, errors.New("GET /api/flows: more than one page")
	}
	m := make(map[string]apiFlow, len(page.Flows))
	for _, f := range page.Flows {
		m[net.JoinHostPort(f.SrcIP, strconv.Itoa(f.SrcPort))] = f
	}
	return m, nil
}

// expectFlows waits (bounded) until the API reports exactly the client's
// connections to the demo port — no more, no fewer — each with the packet
// and byte counts per direction that tcpdump counted, and state SF.
func (p *project) expectFlows(clients []clientResult, oracle *tcpdump) {
	p.t.Helper()
	var last string
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		seen, err := oracle.stable()
		if err != nil {
			last = err.Error()
			continue
		}
		got, err := p.flows()
		if err != nil {
			last = err.Error()
			continue
		}
		if last = compareFlows(clients, seen, got); last == "" {
			return
		}
	}
	p.t.Fatalf("the API's flows never matched the client and tcpdump:\n%s", last)
}

// compareFlows returns "" when got is exactly the clients' connections with
// the counts tcpdump saw, else what differs.
func compareFlows(clients []clientResult, seen map[string]dirCounts, got map[string]apiFlow) string {
	var diffs []string
	want := make(map[string]bool, len(clients))
	for _, c := range clients {
		want[c.Local] = true
		o, ok := seen[c.Local]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: tcpdump saw no packet of this connection", c.Local))
			continue
		}
		f, ok := got[c.Local]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: no flow in the API", c.Local))
		case f.Proto != "tcp" || net.JoinHostPort(f.DstIP, strconv.Itoa(f.DstPort)) != c.Remote:
			diffs = append(diffs, fmt.Sprintf("%s: flow %+v, want tcp to %s", c.Local, f, c.Remote))
		case f.counts() != o:
			diffs = append(diffs, fmt.Sprintf("%s: API %+v, tcpdump %+v", c.Local, f.counts(), o))
		case f.State != "SF":
			diffs = append(diffs, fmt.Sprintf("%s: state %s, want SF", c.Local, f.State))
		}
	}
	for k, f := range got {
		if !want[k] {
			diffs = append(diffs, fmt.Sprintf("%s: unexpected flow %+v", k, f))
		}
	}
	for k := range seen {
		if !want[k] {
			diffs = append(diffs, fmt.Sprintf("%s: tcpdump saw a connection the client did not make", k))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "\n")
}

// dirCounts are a connection's packets and bytes (frame lengths on the
// wire) from its originator and back.
type dirCounts struct {
	PacketsSent, BytesSent, PacketsReceived, BytesReceived uint64
}

// tcpdump runs tcpdump on eth0 in a container's network namespace (entered
// from the host with nsenter), writing TCP port 8080 to a file: the oracle
// the API's counts are compared with.
type tcpdump struct {
	file string
	cmd  *exec.Cmd
	last map[string]dirCounts
}

func startTcpdump(t *testing.T, pid int) *tcpdump {
	t.Helper()
	td := &tcpdump{file: filepath.Join(t.TempDir(), "oracle.pcap")}
	td.cmd = exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(pid)+"/ns/net",
		"tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-s", "256", "-Z", "root", "-w", td.file, "tcp port 8080")
	stderr, err := td.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := td.cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	t.Cleanup(func() {
		td.cmd.Process.Signal(syscall.SIGTERM)
		td.cmd.Wait()
	})
	ready := make(chan error, 1)
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stderr)
		var all []string
		for sc.Scan() {
			all = append(all, sc.Text())
			if strings.Contains(sc.Text(), "listening on") {
				once.Do(func() { ready <- nil })
			}
		}
		once.Do(func() { ready <- fmt.Errorf("tcpdump exited: %s", strings.Join(all, "\n")) })
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("tcpdump did not start listening in 15s")
	}
	return td
}

// counts reads the capture so far and counts each connection's packets
// and bytes by originator endpoint (the side that is not port 8080).
func (td *tcpdump) counts() (map[string]dirCounts, error) {
	f, err := os.Open(td.file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, err
	}
	m := make(map[string]dirCounts)
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			// io.EOF, or io.ErrUnexpectedEOF for a record tcpdump is
			// still writing: what came before it is complete.
			break
		}
		src, dst, ok := tcpEndpoints(data)
		if !ok {
			continue
		}
		switch {
		case dst.port == 8080:
			c := m[src.String()]
			c.PacketsSent++
			c.BytesSent += uint64(ci.Length)
			m[src.String()] = c
		case src.port == 8080:
			c := m[dst.String()]
			c.PacketsReceived++
			c.BytesReceived += uint64(ci.Length)
			m[dst.String()] = c
		}
	}
	return m, nil
}

// stable returns the counts once two reads a second apart agree (the last
// packets of a connection have arrived).
func (td *tcpdump) stable() (map[string]dirCounts, error) {
	m, err := td.counts()
	if err != nil {
		return nil, err
	}
	if td.last != nil && maps.Equal(m, td.last) {
		return m, nil
	}
	td.last = m
	return nil, errors.New("tcpdump's counts are still changing")
}

type endpoint struct {
	ip   net.IP
	port int
}

func (e endpoint) String() string { return net.JoinHostPort(e.ip.String(), strconv.Itoa(e.port)) }

// tcpEndpoints parses an Ethernet + IPv4 + TCP frame.
func tcpEndpoints(b []byte) (src, dst endpoint, ok bool) {
	if len(b) < 14+20+4 || b[12] != 0x08 || b[13] != 0x00 {
		return src, dst, false
	}
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ip[9] != 6 || len(ip) < ihl+4 {
		return src, dst, false
	}
	tcp := ip[ihl:]
	src = endpoint{net.IP(append([]byte(nil), ip[12:16]...)), int(tcp[0])<<8 | int(tcp[1])}
	dst = endpoint{net.IP(append([]byte(nil), ip[16:20]...)), int(tcp[2])<<8 | int(tcp[3])}
	return src, dst, true
}

// procStatus is what /proc/PID/status says about a process's privileges
// and memory.
type procStatus struct {
	Name                           string
	PPid                           int
	Uid, Gid                       [4]int
	CapInh, CapPrm, CapEff, CapBnd uint64
	CapAmb                         uint64
	NoNewPrivs, Seccomp            int
	VmRSSKiB, VmHWMKiB             int
}

func readStatus(pid int) (procStatus, error) {
	var s procStatus
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		f := strings.Fields(v)
		hex := func() uint64 { n, _ := strconv.ParseUint(v, 16, 64); return n }
		num := func() int {
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(f[0])
			return n
		}
		switch k {
		case "Name":
			s.Name = v
		case "PPid":
			s.PPid = num()
		case "Uid", "Gid":
			var ids [4]int
			for i := 0; i < 4 && i < len(f); i++ {
				ids[i], _ = strconv.Atoi(f[i])
			}
			if k == "Uid" {
				s.Uid = ids
			} else {
				s.Gid = ids
			}
		case "CapInh":
			s.CapInh = hex()
		case "CapPrm":
			s.CapPrm = hex()
		case "CapEff":
			s.CapEff = hex()
		case "CapBnd":
			s.CapBnd = hex()
		case "CapAmb":
			s.CapAmb = hex()
		case "NoNewPrivs":
			s.NoNewPrivs = num()
		case "Seccomp":
			s.Seccomp = num()
		case "VmRSS":
			s.VmRSSKiB = num()
		case "VmHWM":
			s.VmHWMKiB = num()
		}
	}
	return s, nil
}

func mustStatus(t *testing.T, pid int) procStatus {
	t.Helper()
	s, err := readStatus(pid)
	if err != nil {
		t.Fatalf("read /proc/%d/status: %v", pid, err)
	}
	return s
}

// Capability bits (linux/capability.h).
const (
	capChown  = 1 << 0
	capSetgid = 1 << 6
	capSetuid = 1 << 7
	capNetRaw = 1 << 13
)

// checkDropped asserts that a capturer process left root for uid 65534
// and holds no capability in any set, with no_new_privs and a seccomp
// filter.
func checkDropped(t *testing.T, what string, s procStatus) {
	t.Helper()
	if s.Uid != [4]int{65534, 65534, 65534, 65534} {
		t.Errorf("%s: uids %v, want 65534 (real, effective, saved, fs)", what, s.Uid)
	}
	if s.CapInh|s.CapPrm|s.CapEff|s.CapAmb != 0 {
		t.Errorf("%s: capabilities inh %x prm %x eff %x amb %x, want none", what, s.CapInh, s.CapPrm, s.CapEff, s.CapAmb)
	}
	if s.NoNewPrivs != 1 {
		t.Errorf("%s: NoNewPrivs %d, want 1", what, s.NoNewPrivs)
	}
}

// checkUnprivileged asserts that an API server process runs as uid 65532
// and holds no capability in any set. With bounding 0 (the container
// dropped them all) it never could have.
func checkUnprivileged(t *testing.T, what string, s procStatus, wantBnd0 bool) {
	t.Helper()
	if s.Uid != [4]int{65532, 65532, 65532, 65532} {
		t.Errorf("%s: uids %v, want 65532", what, s.Uid)
	}
	if s.CapInh|s.CapPrm|s.CapEff|s.CapAmb != 0 {
		t.Errorf("%s: capabilities inh %x prm %x eff %x amb %x, want none", what, s.CapInh, s.CapPrm, s.CapEff, s.CapAmb)
	}
	if wantBnd0 && s.CapBnd != 0 {
		t.Errorf("%s: bounding set %x, want 0", what, s.CapBnd)
	}
	if s.NoNewPrivs != 1 {
		t.Errorf("%s: NoNewPrivs %d, want 1", what, s.NoNewPrivs)
	}
}

// children returns the pids of a process's children.
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// memory is the memory use of one container: peak RSS of its main process
// and the cgroup's peak and current working set (usage less inactive file
// pages, what docker stats and the kubelet report).
type memory struct {
	VmHWMKiB      int
	CgroupPeak    uint64
	WorkingSet    uint64
	CgroupVersion int
}

// containerMemory reads the memory cgroup of pid (v1 or v2).
func containerMemory(pid int) (memory, error) {
	var m memory
	s, err := readStatus(pid)
	if err != nil {
		return m, err
	}
	m.VmHWMKiB = s.VmHWMKiB
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return m, err
	}
	readUint := func(p string) uint64 {
		b, _ := os.ReadFile(p)
		n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	stat := func(p, key string) uint64 {
		b, _ := os.ReadFile(p)
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == key {
				n, _ := strconv.ParseUint(v, 10, 64)
				return n
			}
		}
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "memory" { // cgroup v1
			dir := filepath.Join("/sys/fs/cgroup/memory", f[2])
			m.CgroupVersion = 1
			m.CgroupPeak = readUint(filepath.Join(dir, "memory.max_usage_in_bytes"))
			usage := readUint(filepath.Join(dir, "memory.usage_in_bytes"))
			m.WorkingSet = usage - min(usage, stat(filepath.Join(dir, "memory.stat"), "total_inactive_file"))
			return m, nil
		}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok { // cgroup v2
			dir := filepath.Join("/sys/fs/cgroup", p)
			m.CgroupVersion = 2
			m.CgroupPeak = readUint(filepath.Join(dir, "memory.peak"))
			usage := readUint(filepath.Join(dir, "memory.current"))
			m.WorkingSet = usage - min(usage, stat(filepath.Join(dir, "memory.stat"), "inactive_file"))
			return m, nil
		}
	}
	return m, errors.New("no memory cgroup")
}

func (m memory) String() string {
	mib := func(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	return fmt.Sprintf("peak RSS (VmHWM) %s, cgroup v%d peak %s, working set now %s",
		mib(uint64(m.VmHWMKiB)<<10), m.CgroupVersion, mib(m.CgroupPeak), mib(m.WorkingSet))
}

// freePort returns a TCP port free on the loopback address now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dumpJSON is for failure messages.
func dumpJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.Encode(v)
	return b.String()
}
