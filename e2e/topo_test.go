//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// topo is one test's network: a client namespace and a server namespace
// joined by a veth pair with IPv4 and IPv6 addresses and offloads off
// (testenv.NetnsPair). The product runs in the server's namespace, as a
// sidecar shares its container's, and watches the server's veth end.
type topo struct {
	*testenv.Pair
	client, server string // namespace names
	dev            string // the watched interface, in server
	dir            string // files of this test (mode 0755)
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	p := testenv.NetnsPair(t)
	dir, err := os.MkdirTemp("", "lightshark-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the namespaces: runs before they are deleted and
	// after every process started later was killed.
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &topo{Pair: p, client: p.A, server: p.B, dev: p.DevB, dir: dir}
}

// ours reports whether a flow is traffic the test made: between the two
// namespaces' addresses, and not the kernel's own IPv6 housekeeping
// (neighbor discovery, MLD), which may fall outside the moment both
// captures run. ICMPv6 echo flows (type 128) are ours.
func (tp *topo) ours(proto, src, dst string, srcPort uint16) bool {
	addrs := map[string]bool{tp.A4.String(): true, tp.B4.String(): true, tp.A6.String(): true, tp.B6.String(): true}
	if !addrs[src] || !addrs[dst] {
		return false
	}
	return proto != "icmpv6" || srcPort == 128 || srcPort == 129
}

// Servers in the server namespace.
const (
	httpPort  = 8080
	iperfPort = 5201
	closedTCP = 9 // nothing listens there: connections are refused
)

// startHTTP serves a small and a large file with python3 -m http.server on
// both families.
func (tp *topo) startHTTP(t *testing.T) {
	t.Helper()
	www := filepath.Join(tp.dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(www, "small.txt"), []byte("hello from the server\n"), 0o644)
	os.WriteFile(filepath.Join(www, "large.bin"), bytes.Repeat([]byte("lightshark"), 300_000), 0o644)
	tp.Start(t, tp.server, "python3", "-m", "http.server", "--bind", "::", "--directory", www, strconv.Itoa(httpPort))
	waitFor(t, 20*time.Second, "the HTTP server", func() bool {
		_, err := runErr(5*time.Second, tp.client, "curl", "-sf", "-o", "/dev/null", tp.url4("/small.txt"))
		return err == nil
	})
}

func (tp *topo) url4(path string) string {
	return fmt.Sprintf("http://%s:%d%s", tp.B4, httpPort, path)
}

func (tp *topo) url6(path string) string {
	return fmt.Sprintf("http://[%s]:%d%s", tp.B6, httpPort, path)
}

// startIperf starts an iperf3 server (it serves one test at a time).
func (tp *topo) startIperf(t *testing.T) {
	t.Helper()
	tp.Start(t, tp.server, "iperf3", "-s", "-p", strconv.Itoa(iperfPort))
	waitFor(t, 10*time.Second, "the iperf3 server", func() bool {
		out, _ := runErr(5*time.Second, tp.server, "ss", "-ltn")
		return strings.Contains(out, fmt.Sprintf(":%d ", iperfPort))
	})
}

// startDNS starts dnsmasq answering for example.test on both families,
// from its own configuration only.
func (tp *topo) startDNS(t *testing.T) {
	t.Helper()
	tp.Start(t, tp.server, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--no-dhcp-interface="+tp.dev, "--bind-interfaces", "--listen-address="+tp.B4.String(),
		"--listen-address="+tp.B6.String(), "--user=root", "--pid-file=",
		"--address=/example.test/192.0.2.80", "--address=/example.test/2001:db8::80", "--log-facility=-")
	waitFor(t, 10*time.Second, "dnsmasq", func() bool {
		_, err := runErr(3*time.Second, tp.client, "dig", "@"+tp.B4.String(), "+tries=1", "+time=1", "ready.example.test")
		return err == nil
	})
}

// mixedTraffic is the traffic, made by real programs from the
// client to the server: many short HTTP connections and a few large
// transfers on both families, a refused connection, pings with fragmenting
// sizes on both families, DNS queries over UDP (both families) and TCP,
// and iperf3 TCP and UDP at bounded rates (so that tcpdump, the oracle,
// keeps up). It needs startHTTP, startIperf and startDNS.
func (tp *topo) mixedTraffic(t *testing.T) {
	t.Helper()
	c := tp.client
	for i := range 30 {
		u := tp.url4("/small.txt")
		if i%3 == 2 {
			u = tp.url6("/small.txt")
		}
		run(t, 20*time.Second, c, "curl", "-sf", "-o", "/dev/null", u)
	}
	run(t, 30*time.Second, c, "curl", "-sf", "--limit-rate", "20M", "-o", "/dev/null", tp.url4("/large.bin"))
	run(t, 30*time.Second, c, "curl", "-sf", "--limit-rate", "20M", "-o", "/dev/null", tp.url6("/large.bin"))
	// Refused: curl fails, as it should.
	if out, err := runErr(10*time.Second, c, "curl", "-s", "--max-time", "5", "-o", "/dev/null",
		fmt.Sprintf("http://%s:%d/", tp.B4, closedTCP)); err == nil {
		t.Fatalf("curl to the closed port succeeded: %s", out)
	}
	run(t, 20*time.Second, c, "ping", "-c", "3", "-i", "0.2", "-s", "4000", tp.B4.String())
	run(t, 20*time.Second, c, "ping", "-6", "-c", "3", "-i", "0.2", "-s", "4000", tp.B6.String())
	for _, q := range [][]string{
		{"@" + tp.B4.String(), "www.example.test", "A"},
		{"@" + tp.B6.String(), "www.example.test", "AAAA"},
		{"@" + tp.B4.String(), "+tcp", "api.example.test", "A"},
	} {
		out := run(t, 20*time.Second, c, append([]string{"dig", "+tries=1", "+time=2"}, q...)...)
		if !strings.Contains(out, "status: NOERROR") {
			t.Fatalf("dig %v:\n%s", q, out)
		}
	}
	iperf := []string{"iperf3", "-c", tp.B4.String(), "-p", strconv.Itoa(iperfPort), "-t", "2"}
	run(t, 30*time.Second, c, append(iperf, "-u", "-b", "2M", "-l", "1200")...)
	run(t, 30*time.Second, c, append(iperf, "-b", "20M")...)
}

// streamScript makes HTTP requests (a new connection each) to URL every
// INTERVAL seconds until it is sent SIGTERM, then exits cleanly; every
// tenth goes to URL6.
const streamScript = `
import signal, sys, time, urllib.request
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
url, url6, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
i = 0
while not stop:
    try:
        urllib.request.urlopen(url6 if i % 10 == 9 else url, timeout=5).read()
    except Exception as e:
        print("request failed:", e, flush=True)
    i += 1
    time.sleep(interval)
`

// stream is steady background traffic: HTTP connections at a fixed rate
// and, when udpRate is set, an iperf3 UDP stream of 200-byte datagrams.
type stream struct {
	http, udp *proc
}

// startStream starts a steady stream from the client: requestsPerSecond
// HTTP connections a second and an iperf3 UDP stream at udpRate (iperf3 -b
// syntax, "" for none) for at most d. It needs startHTTP (and startIperf
// for UDP).
func (tp *topo) startStream(t *testing.T, requestsPerSecond float64, udpRate string, d time.Duration) *stream {
	t.Helper()
	s := &stream{}
	s.http = startProc(t, tp.client, "http stream", nil, "python3", "-c", streamScript,
		tp.url4("/small.txt"), tp.url6("/small.txt"), strconv.FormatFloat(1/requestsPerSecond, 'f', 3, 64))
	if udpRate != "" {
		s.udp = startProc(t, tp.client, "iperf3 udp stream", nil, "iperf3", "-c", tp.B4.String(), "-p", strconv.Itoa(iperfPort),
			"-u", "-b", udpRate, "-l", "200", "-t", strconv.Itoa(int(d/time.Second)))
	}
	return s
}

// stop ends the stream and lets its last packets reach both captures.
func (s *stream) stop(t *testing.T) {
	t.Helper()
	s.http.signal(t, syscall.SIGTERM)
	if _, err := s.http.wait(10 * time.Second); err != nil {
		t.Error(err)
	}
	if s.udp != nil && !s.udp.exited() {
		s.udp.signal(t, syscall.SIGINT) // iperf3 ends its test and says goodbye
		if _, err := s.udp.wait(10 * time.Second); err != nil {
			t.Error(err)
		}
	}
	time.Sleep(time.Second)
}

// tcpdump is the oracle capturing beside the product, on the same
// interface in the same namespace, into a file.
type tcpdump struct {
	p    *proc
	file string
}

// startTcpdump starts tcpdump with more options, if any.
func (tp *topo) startTcpdump(t *testing.T, options ...string) *tcpdump {
	t.Helper()
	file := filepath.Join(tp.dir, "oracle.pcap")
	td := &tcpdump{file: file}
	args := append([]string{"tcpdump", "-n", "-i", tp.dev, "--immediate-mode",
		"-B", "32768", "--time-stamp-precision", "nano", "-U", "-w", file}, options...)
	td.p = startProc(t, tp.server, "tcpdump", nil, args...)
	waitFor(t, 15*time.Second, "tcpdump to listen", func() bool {
		return strings.Contains(td.p.out.String(), "listening on")
	})
	return td
}

var tcpdumpDrops = regexp.MustCompile(`(\d+) packets? dropped by kernel`)
var tcpdumpCaptured = regexp.MustCompile(`(\d+) packets? captured`)

// stop stops tcpdump and returns how many packets it captured; the
// oracle is worthless if tcpdump itself dropped any, so that fails the
// test.
func (td *tcpdump) stop(t *testing.T) uint64 {
	t.Helper()
	td.p.signal(t, syscall.SIGINT)
	if _, err := td.p.wait(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	out := td.p.out.String()
	m := tcpdumpDrops.FindStringSubmatch(out)
	if m == nil || m[1] != "0" {
		t.Fatalf("tcpdump, the oracle, dropped packets or did not say: %q", out)
	}
	c := tcpdumpCaptured.FindStringSubmatch(out)
	if c == nil {
		t.Fatalf("tcpdump did not say how many packets it captured: %q", out)
	}
	n, _ := strconv.ParseUint(c[1], 10, 64)
	return n
}

// ctxFor returns a context that ends with the test or after d.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
