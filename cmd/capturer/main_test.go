package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/capture/capturetest"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// buildCapturer builds the real binary (static, as shipped) into a
// directory every user can read, so it can also run as an unprivileged uid.
func buildCapturer(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lightshark-capturer-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "lightshark-capturer")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runBin runs the binary with a time limit and returns stdout, stderr and
// the exit code.
func runBin(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v: no exit after a minute", cmd.Args)
	}
	return "", "", -1
}

func readFlows(t *testing.T, jsonl string) []record.Flow {
	t.Helper()
	var flows []record.Flow
	sc := bufio.NewScanner(strings.NewReader(jsonl))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var f record.Flow
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		flows = append(flows, f)
	}
	return flows
}

func TestBadInput(t *testing.T) {
	bin := buildCapturer(t)
	notCapture := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notCapture, []byte("this is not a capture file\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"bad port", []string{"--read", notCapture, "--output", "jsonl", "--filter-port", "70000"}, "--filter-port"},
		{"bad ip", []string{"--read", notCapture, "--output", "jsonl", "--filter-ip", "10.0.0.300"}, "--filter-ip"},
		{"bad protocol", []string{"--read", notCapture, "--output", "jsonl", "--filter-protocol", "tcpx"}, "--filter-protocol"},
		{"bad output", []string{"--read", notCapture, "--output", "xml"}, "--output"},
		{"not a capture", []string{"--read", notCapture, "--output", "jsonl"}, "not a pcap or pcapng file"},
		{"missing file", []string{"--read", notCapture + ".none", "--output", "jsonl"}, "no such file"},
		{"unknown interface", []string{"-i", "nosuchif0", "--output", "jsonl"}, "available: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runBin(t, exec.Command(bin, tt.args...))
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("got exit %d, stderr %q; want exit 1 and %q", code, stderr, tt.want)
			}
		})
	}
	t.Run("unknown interface lists lo", func(t *testing.T) {
		_, stderr, _ := runBin(t, exec.Command(bin, "-i", "nosuchif0", "--output", "jsonl"))
		if !strings.Contains(stderr, "lo") {
			t.Errorf("stderr %q does not list the loopback interface", stderr)
		}
	})
}

// Without CAP_NET_RAW the error names the capability.
func TestNoPrivilege(t *testing.T) {
	testenv.RequireRoot(t)
	bin := buildCapturer(t)
	cmd := exec.Command(bin, "-i", "lo", "--output", "jsonl")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	_, stderr, code := runBin(t, cmd)
	if code != 1 || !strings.Contains(stderr, "CAP_NET_RAW") {
		t.Errorf("got exit %d, stderr %q; want exit 1 naming CAP_NET_RAW", code, stderr)
	}
}

// Reading standard input gives the same flows as reading the file, whether
// standard input is the file itself or a pipe (read as a stream).
func TestReadStdin(t *testing.T) {
	shared := testenv.SharedDir(t)
	bin := buildCapturer(t)
	path := filepath.Join(shared, "pcaps", "conformance", "zeek-http-cooper-grill-dvwa.pcapng")
	fromFile, _, code := runBin(t, exec.Command(bin, "--read", path, "--output", "jsonl", "-q"))
	if code != 0 || len(readFlows(t, fromFile)) == 0 {
		t.Fatalf("file: exit %d, %d bytes; want 0 and flows", code, len(fromFile))
	}
	tests := []struct {
		name  string
		stdin func(f *os.File) io.Reader
	}{
		{"regular file", func(f *os.File) io.Reader { return f }},
		// Not an *os.File: exec copies it into a pipe.
		{"pipe", func(f *os.File) io.Reader { return struct{ io.Reader }{f} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd := exec.Command(bin, "--read", "-", "--output", "jsonl", "-q")
			cmd.Stdin = tt.stdin(f)
			fromStdin, _, code := runBin(t, cmd)
			if code != 0 || fromStdin != fromFile {
				t.Errorf("stdin: exit %d, %d bytes; file: %d bytes; want exit 0 and the same output", code, len(fromStdin), len(fromFile))
			}
		})
	}
}

// TestStreamJSONL: reading a stream with --output jsonl, the flows that
// end are written out within a flush interval, while the stream stays
// open, not when 64 KiB of them have piled up or at its end.
func TestStreamJSONL(t *testing.T) {
	bin := buildCapturer(t)
	cmd := exec.Command(bin, "--read", "-", "--output", "jsonl", "-q", "--connection-timeout", "10", "--flush-interval", "100ms")
	stdout, stderr := &testenv.Buffer{}, &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	w := startStdinStream(t, cmd)
	defer w.Close()
	exited := watchExit(t, cmd)

	// 20 flows, then a packet of a 21st flow 100 s later in capture time:
	// the 20 are idle beyond --connection-timeout and end.
	later := capturetest.UDPRecords(2000, 1)
	binary.LittleEndian.PutUint32(later[0:], 1_700_000_100)
	if _, err := w.Write(append(append(capturetest.PcapHeader(), capturetest.UDPRecords(1000, 20)...), later...)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for strings.Count(stdout.String(), "\n") < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("%d flows written within 3 s, the stream open; want the 20 ended\nstderr: %s", strings.Count(stdout.String(), "\n"), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, f := range readFlows(t, stdout.String()) {
		if f.SrcPort >= 2000 || f.EndReason == "" {
			t.Errorf("written before the end of the stream: %s:%d, end reason %q", f.SrcIP, f.SrcPort, f.EndReason)
		}
	}
	w.Close()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("no exit within 5 s of the end of the stream")
	}
	if n := len(readFlows(t, stdout.String())); n != 21 {
		t.Errorf("%d flows at the end, want 21", n)
	}
}

// flowKey identifies a flow for comparing two captures of the same traffic.
func flowKey(f record.Flow) string {
	return fmt.Sprintf("%s %s:%d > %s:%d vlan %d", f.Proto, f.SrcIP, f.SrcPort, f.DstIP, f.DstPort, f.VLAN)
}

// TestLive runs real programs between two network namespaces (curl against
// python3's http.server over IPv4 and IPv6 with many short and a few large
// transfers, a refused connection, ping and ping -6 with fragmenting sizes,
// iperf3 UDP and TCP at a bounded rate) and captures in the server's
// namespace with the capturer running as an unprivileged uid holding only
// ambient CAP_NET_RAW (setpriv), with tcpdump beside it. The capturer's flows
// must equal the flows of tcpdump's file read back in offline mode, packet
// for packet and byte for byte, and the capturer must have dropped every
// privilege once its socket was open.
func TestLive(t *testing.T) {
	p := testenv.NetnsPair(t)
	for _, tool := range []string{"tcpdump", "curl", "python3", "iperf3", "ping", "setpriv"} {
		testenv.RequireTool(t, tool)
	}
	bin := buildCapturer(t)
	dir := t.TempDir()

	// The server: a directory with a large file, served on both families.
	www := filepath.Join(dir, "www")
	os.Mkdir(www, 0o755)
	os.WriteFile(filepath.Join(www, "small.txt"), []byte("hello\n"), 0o644)
	os.WriteFile(filepath.Join(www, "large.bin"), bytes.Repeat([]byte("lightshark"), 300_000), 0o644)
	http := p.Command(p.B, "python3", "-m", "http.server", "--bind", "::", "--directory", www, "8080")
	p.StartCmd(t, http)
	p.Start(t, p.B, "iperf3", "-s", "-p", "5201")

	// tcpdump beside the capturer, on the same interface.
	pcap := filepath.Join(dir, "oracle.pcap")
	tcpdump := p.Command(p.B, "tcpdump", "-n", "-i", p.DevB, "--immediate-mode", "-B", "32768",
		"--time-stamp-precision", "nano", "-U", "-w", pcap)
	tdErr := &testenv.Buffer{}
	tcpdump.Stderr = tdErr
	p.StartCmd(t, tcpdump)

	// The capturer as uid 65534 with only ambient CAP_NET_RAW.
	live := p.Command(p.B, "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
		"--inh-caps", "-all,+net_raw", "--ambient-caps", "+net_raw",
		bin, "-i", p.DevB, "--output", "jsonl", "--stats", "--connection-timeout", "300")
	liveOut, liveErr := &testenv.Buffer{}, &testenv.Buffer{}
	live.Stdout, live.Stderr = liveOut, liveErr
	p.StartCmd(t, live)

	waitFor(t, "tcpdump to listen", func() bool { return strings.Contains(tdErr.String(), "listening on") })
	waitFor(t, "the capturer to start", func() bool { return strings.Contains(liveErr.String(), "capture started") })
	waitFor(t, "the HTTP server", func() bool {
		return p.Command(p.A, "curl", "-s", "-o", "/dev/null", fmt.Sprintf("http://%s:8080/small.txt", p.B4)).Run() == nil
	})

	// The capturer runs without any capability, as uid 65534.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", live.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapAmb:\t0000000000000000"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("capturer /proc status lacks %q:\n%s", want, status)
		}
	}

	// The traffic.
	b4, b6 := p.B4.String(), "["+p.B6.String()+"]"
	for i := range 20 {
		host := b4
		if i%4 == 3 {
			host = b6
		}
		p.Exec(t, p.A, "curl", "-s", "-o", "/dev/null", "http://"+host+":8080/small.txt")
	}
	// Bounded rates: the oracle (tcpdump writing a file) must not drop.
	p.Exec(t, p.A, "curl", "-s", "--limit-rate", "20M", "-o", "/dev/null", "http://"+b4+":8080/large.bin")
	p.Exec(t, p.A, "curl", "-s", "--limit-rate", "20M", "-o", "/dev/null", "http://"+b6+":8080/large.bin")
	p.Command(p.A, "curl", "-s", "-o", "/dev/null", "--max-time", "5", "http://"+b4+":9/").Run() // refused
	p.Exec(t, p.A, "ping", "-c", "3", "-i", "0.2", "-s", "4000", b4)
	p.Exec(t, p.A, "ping", "-6", "-c", "3", "-i", "0.2", "-s", "4000", p.B6.String())
	p.Exec(t, p.A, "iperf3", "-c", b4, "-p", "5201", "-u", "-b", "2M", "-t", "2", "-l", "1200")
	p.Exec(t, p.A, "iperf3", "-c", b4, "-p", "5201", "-b", "20M", "-t", "2")
	time.Sleep(time.Second) // let the last packets reach both sockets

	// Stop both; the capturer prints every remaining flow and its stats.
	tcpdump.Process.Signal(syscall.SIGINT)
	live.Process.Signal(syscall.SIGTERM)
	if err := waitExit(live, 10*time.Second); err != nil {
		t.Fatalf("capturer: %v\n%s", err, liveErr.String())
	}
	if err := waitExit(tcpdump, 10*time.Second); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}

	if m := regexp.MustCompile(`(\d+) packets? dropped by kernel`).FindStringSubmatch(tdErr.String()); m == nil || m[1] != "0" {
		t.Fatalf("tcpdump, the oracle, dropped packets or did not say: %q", tdErr.String())
	}
	var stats struct{ Stats record.CaptureStats }
	for _, line := range strings.Split(liveErr.String(), "\n") {
		if strings.HasPrefix(line, `{"stats"`) {
			json.Unmarshal([]byte(line), &stats)
		}
	}
	if stats.Stats.Packets == 0 || stats.Stats.KernelDrops != 0 {
		t.Fatalf("capturer stats: %+v (want packets and no kernel drops)\n%s", stats.Stats, liveErr.String())
	}

	offline, stderr, code := runBin(t, exec.Command(bin, "--read", pcap, "--output", "jsonl", "-q"))
	if code != 0 {
		t.Fatalf("offline read of tcpdump's file: exit %d: %s", code, stderr)
	}
	got, want := index(readFlows(t, liveOut.String())), index(readFlows(t, offline))

	// Compare the flows of the traffic the test made: between the two
	// namespaces' addresses (the kernel's own IPv6 housekeeping, such as
	// neighbor discovery and MLD, may fall outside the moment both
	// captures run, so it is left out).
	ours := map[string]bool{p.A4.String(): true, p.B4.String(): true, p.A6.String(): true, p.B6.String(): true}
	var compared int
	seen := map[string]bool{}
	for _, k := range sortedKeys(want) {
		w := want[k]
		if !ours[w.SrcIP] || !ours[w.DstIP] || w.Proto == "icmpv6" && w.SrcPort != 128 {
			continue
		}
		seen[k] = true
		compared++
		g, ok := got[k]
		if !ok {
			t.Errorf("flow %s: in tcpdump's capture, not in the capturer's", k)
			continue
		}
		if g.PacketsSent != w.PacketsSent || g.BytesSent != w.BytesSent || g.PacketsReceived != w.PacketsReceived ||
			g.BytesReceived != w.BytesReceived || !testenv.SameHistory(g.History, w.History) || g.State != w.State ||
			!near(g.FirstSeen, w.FirstSeen) || !near(g.LastSeen, w.LastSeen) || g.CommunityID != w.CommunityID {
			t.Errorf("flow %s:\n live    %+v\n offline %+v", k, g, w)
		}
		if g.DstIP == p.B4.String() || g.DstIP == p.B6.String() {
			if g.Direction != record.DirInbound {
				t.Errorf("flow %s: direction %q, want inbound", k, g.Direction)
			}
		}
	}
	for k, g := range got {
		if ours[g.SrcIP] && ours[g.DstIP] && !seen[k] && !(g.Proto == "icmpv6" && g.SrcPort != 128) {
			t.Errorf("flow %s: in the capturer's output, not in tcpdump's capture", k)
		}
	}
	// The traffic must really be there: 20 + 2 HTTP connections, the
	// refused one, pings, iperf3's control and data connections.
	var http8080, refused, udp, icmp4, icmp6, frags uint64
	for _, f := range want {
		switch {
		case f.DstPort == 8080 && f.State == "SF":
			http8080++
		case f.DstPort == 9 && f.State == "REJ":
			refused++
		case f.Proto == "udp" && f.DstPort == 5201:
			udp++
		case f.Proto == "icmp" && f.SrcPort == 8:
			icmp4++
			frags += f.PacketsSent
		case f.Proto == "icmpv6" && f.SrcPort == 128:
			icmp6++
		}
	}
	if http8080 < 22 || refused != 1 || udp != 1 || icmp4 != 1 || icmp6 != 1 || frags != 9 {
		t.Errorf("traffic seen: %d HTTP flows (want >= 22), %d refused (1), %d iperf3 UDP (1), %d ping (1), %d ping6 (1), %d IPv4 echo fragments (3 pings x 3 fragments)",
			http8080, refused, udp, icmp4, icmp6, frags)
	}
	t.Logf("compared %d flows; capturer stats %+v", compared, stats.Stats)
}

// near compares the two sockets' timestamps of the same packets: each
// socket stamps a packet as the kernel hands it over, microseconds apart.
func near(a, b record.Time) bool {
	d := a.Sub(b.Time)
	return d < 10*time.Millisecond && d > -10*time.Millisecond
}

func index(flows []record.Flow) map[string]record.Flow {
	m := map[string]record.Flow{}
	for _, f := range flows {
		k := flowKey(f)
		for n := 2; ; n++ { // a reused 4-tuple: number the later flows
			if _, dup := m[k]; !dup {
				break
			}
			k = fmt.Sprintf("%s #%d", flowKey(f), n)
		}
		m[k] = f
	}
	return m
}

func sortedKeys(m map[string]record.Flow) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitExit(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("no exit within %v", d)
	}
}
