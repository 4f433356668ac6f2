package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/pkg/communityid"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// Issue 4's API server targets.
const (
	targetIngestSamples = 100_000 // packet records committed per second, at least
	targetIngestFlows   = 50_000  // flow updates committed per second, at least
	targetLiveP99       = 10 * time.Millisecond
	targetFlowsP99      = 50 * time.Millisecond
	targetAPIRSS        = 16 << 20 // apiserver VmHWM, at most
	targetRate          = 1000     // requests/s of the latency benchmark
)

// Defaults of the API benchmarks' knobs. Besides these:
// LIGHTSHARK_BENCH_API_LAT_FLOWS (flow updates per second during the
// latency benchmark, default 10,000), LIGHTSHARK_BENCH_APISERVER (a
// lightshark-apiserver binary to measure instead of building
// ./cmd/apiserver, e.g. one that writes a CPU profile),
// LIGHTSHARK_BENCH_API_STDERR (a file for the server's log) and
// LIGHTSHARK_BENCH_API_INPROCESS=1 (runs BenchmarkAPIIngestInProcess).
const (
	defaultAPISeconds   = 10        // LIGHTSHARK_BENCH_API_SECONDS: each measured phase
	defaultAPIFlowRows  = 1_000_000 // LIGHTSHARK_BENCH_API_FLOWS: rows of the /api/flows database
	defaultAPIQueries   = 200       // LIGHTSHARK_BENCH_API_QUERIES: requests per /api/flows query
	defaultAPIGoMemLim  = "12MiB"   // LIGHTSHARK_BENCH_API_GOMEMLIMIT: the apiserver's GOMEMLIMIT
	apiTrafficGen       = "v1"      // bump when apiTraffic's output changes (names cached databases)
	apiServerStartLimit = 30 * time.Second
)

const secAPI = "API server (lightshark-apiserver: real binary, real Unix socket, real SQLite file)"

func init() { sectionOrder = append(sectionOrder, secAPI) }

// apiserverBin returns the lightshark-apiserver binary built from this
// tree, or LIGHTSHARK_BENCH_APISERVER.
func apiserverBin(tb testing.TB) string {
	tb.Helper()
	if runtime.GOOS != "linux" {
		tb.Skipf("needs Linux (/proc), not %s", runtime.GOOS)
	}
	if p := os.Getenv("LIGHTSHARK_BENCH_APISERVER"); p != "" {
		return p // a binary built otherwise (profiling, comparison)
	}
	return buildBin(tb, "./cmd/apiserver", "lightshark-apiserver")
}

// apiServer is a running lightshark-apiserver, its peak RSS sampled by
// proc.
type apiServer struct {
	p *proc
	// Peaks of the resident memory's parts: anonymous (heaps, stacks,
	// SQLite's page caches) and file-backed (the binary's pages).
	anon, file atomic.Int64
	base       string // http://127.0.0.1:PORT
	socket     string
	db         string
}

// apiGoMemLimit is the GOMEMLIMIT the benchmarks give the API server.
func apiGoMemLimit() string {
	if v := os.Getenv("LIGHTSHARK_BENCH_API_GOMEMLIMIT"); v != "" {
		return v
	}
	return defaultAPIGoMemLim
}

// startAPIServer starts the API server on a loopback port with its socket
// in a temporary directory and its database at db, and waits until it
// serves.
func startAPIServer(tb testing.TB, db string, args ...string) *apiServer {
	tb.Helper()
	bin := apiserverBin(tb)
	sock := filepath.Join(tb.TempDir(), "ipc.sock")
	cmd := exec.Command(bin, append([]string{"--socket", sock, "--db-path", db, "--listen", "127.0.0.1:0",
		"--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), "GOMEMLIMIT="+apiGoMemLimit())
	s := &apiServer{p: startProc(tb, cmd, nil), socket: sock, db: db}
	go func() {
		pid := s.p.cmd.Process.Pid
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			for _, x := range []struct {
				v     *atomic.Int64
				field string
			}{{&s.anon, "RssAnon"}, {&s.file, "RssFile"}} {
				if v := procStatus(pid, x.field); v > x.v.Load() {
					x.v.Store(v)
				}
			}
			select {
			case <-s.p.done:
				return
			case <-t.C:
			}
		}
	}()
	tb.Cleanup(func() {
		if s.p.cmd.ProcessState == nil {
			s.p.cmd.Process.Kill()
			s.p.wait()
		}
	})
	deadline := time.Now().Add(apiServerStartLimit)
	for s.base == "" {
		for _, l := range strings.Split(s.p.stderr.String(), "\n") {
			var m struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal([]byte(l), &m) == nil && m.Msg == "api server started" {
				s.base = "http://" + m.Listen
			}
		}
		if s.base != "" {
			break
		}
		if _, state := procCPU(s.p.cmd.Process.Pid); state == "Z" || state == "" {
			tb.Fatalf("the API server exited:\n%s", s.p.stderr.String())
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the API server did not start within %v:\n%s", apiServerStartLimit, s.p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

// hwm is the server's peak RSS so far.
func (s *apiServer) hwm() int64 {
	return max(s.p.hwm.Load(), procStatus(s.p.cmd.Process.Pid, "VmHWM"))
}

// stop sends SIGTERM, waits for the exit and fails on errors it logged.
func (s *apiServer) stop(tb testing.TB) measured {
	tb.Helper()
	s.p.cmd.Process.Signal(syscall.SIGTERM)
	m := s.p.wait()
	if p := os.Getenv("LIGHTSHARK_BENCH_API_STDERR"); p != "" {
		os.WriteFile(p, []byte(m.Stderr), 0o644) // the server's log, for debugging
	}
	if m.Err != nil {
		tb.Errorf("api server: %v\n%s", m.Err, tail(m.Stderr, 2000))
	}
	if strings.Contains(m.Stderr, `"level":"ERROR"`) {
		tb.Errorf("api server logged errors:\n%s", tail(m.Stderr, 4000))
	}
	return m
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// rssRow reports the server's peak RSS against the target, with the peaks
// of its anonymous and file-backed parts.
func (s *apiServer) rssRow(what string) {
	hwm := s.hwm()
	results.add(secAPI, fmt.Sprintf("apiserver peak RSS (VmHWM) %s, GOMEMLIMIT=%s", what, apiGoMemLimit()),
		fmt.Sprintf("%s (peaks: anonymous %s, file-backed %s)", mib(hwm), mib(s.anon.Load()), mib(s.file.Load())),
		"≤ "+mib(targetAPIRSS), hwm <= targetAPIRSS)
}

// apiTraffic models what a capturer watching a busy service sends: a
// rotating set of active flows whose cumulative counters grow (most
// updates hit a flow stored before), a share of them ending and replaced
// by new ones, and packet samples of active flows. The watched
// container's own addresses are on one side of every flow; its peers are
// Zipf-distributed, so a few are in many flows and most in few.
// Deterministic for a seed.
type apiTraffic struct {
	rng    *rand.Rand
	zipf   *rand.Zipf
	now    time.Time // capture time
	active []record.Flow
	next   int    // rotating update cursor into active
	made   uint64 // flows created
	idBase uint64
	stats  record.CaptureStats
	cidBuf []byte
}

// The watched container and its peers.
var (
	apiOwn4 = netip.MustParseAddr("10.0.0.2")
	apiOwn6 = netip.MustParseAddr("fd00::2")
)

const apiPeers = 2000

// apiPeer returns peer k (k < apiPeers): a tenth IPv6, the first hundred
// internal services (10.0.1.0/24), the rest external.
func apiPeer(k int) netip.Addr {
	switch {
	case k%10 == 9:
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, byte(k >> 8), byte(k)})
	case k < 100:
		return netip.AddrFrom4([4]byte{10, 0, 1, byte(k)})
	default:
		return netip.AddrFrom4([4]byte{198, 51, byte(100 + k>>8), byte(k)})
	}
}

func newAPITraffic(seed uint64, active int, start time.Time) *apiTraffic {
	t := &apiTraffic{
		rng:    rand.New(rand.NewPCG(seed, seed^0xa91)),
		now:    start,
		idBase: seed << 40,
	}
	t.zipf = rand.NewZipf(t.rng, 1.1, 1, apiPeers-1)
	for range active {
		t.active = append(t.active, t.newFlow(start))
	}
	return t
}

// newFlow returns a new flow first seen at first: outbound 80 % (TCP to
// 443, 80, 5432, 6379; DNS, QUIC and NTP over UDP; ICMP echo), inbound
// 20 % (TCP to the service's 8080).
func (t *apiTraffic) newFlow(first time.Time) record.Flow {
	t.made++
	k := int(t.zipf.Uint64())
	peer := apiPeer(k)
	own := apiOwn4
	if peer.Is6() {
		own = apiOwn6
	}
	f := record.Flow{
		ID:        strconv.FormatUint((t.idBase+t.made)*0x9e3779b97f4a7c15|1<<63, 16),
		FirstSeen: record.Time{Time: first},
		LastSeen:  record.Time{Time: first},
		Direction: record.DirOutbound,
	}
	src, dst := own, peer
	ephemeral := uint16(32768 + t.rng.IntN(28000))
	switch r := t.rng.IntN(100); {
	case r < 20: // inbound requests to the service
		src, dst = peer, own
		f.ProtoNum, f.SrcPort, f.DstPort, f.Direction = 6, ephemeral, 8080, record.DirInbound
	case r < 70:
		f.ProtoNum, f.SrcPort = 6, ephemeral
		f.DstPort = []uint16{443, 443, 443, 80, 5432, 6379}[t.rng.IntN(6)]
	case r < 88:
		f.ProtoNum, f.SrcPort, f.DstPort = 17, ephemeral, 53
	case r < 94:
		f.ProtoNum, f.SrcPort, f.DstPort = 17, ephemeral, 443
	case r < 96:
		f.ProtoNum, f.SrcPort, f.DstPort = 17, 123, 123
	default:
		f.ProtoNum, f.SrcPort, f.DstPort = 1, 8, 0 // echo request, as the record carries ICMP
		if peer.Is6() {
			f.ProtoNum, f.SrcPort = 58, 128
		}
	}
	f.Proto = record.ProtoName(f.ProtoNum)
	f.SrcIP, f.DstIP = src.String(), dst.String()
	t.cidBuf = communityid.AppendSum(t.cidBuf[:0], 0, f.ProtoNum, src, dst, f.SrcPort, f.DstPort)
	f.CommunityID = string(t.cidBuf)
	switch f.ProtoNum {
	case 6:
		f.State, f.History, f.TCPFlags = "S1", "ShAD", "SPA"
	default:
		f.State = "SF"
	}
	return f
}

// grow adds a few packets each way to f, seen at at.
func (t *apiTraffic) grow(f *record.Flow, at time.Time) {
	ps, pr := uint64(1+t.rng.IntN(12)), uint64(t.rng.IntN(12))
	f.PacketsSent += ps
	f.BytesSent += ps * uint64(66+t.rng.IntN(600))
	f.PacketsReceived += pr
	f.BytesReceived += pr * uint64(66+t.rng.IntN(1448))
	if at.After(f.LastSeen.Time) {
		f.LastSeen = record.Time{Time: at}
	}
	t.stats.Packets += ps + pr
	t.stats.Bytes += ps*400 + pr*800
}

// end makes f a final record.
func (t *apiTraffic) end(f *record.Flow) {
	f.EndReason = record.EndClosed
	if f.ProtoNum == 6 {
		f.History, f.TCPFlags = "ShADadFf", "FSPA"
		f.State = []string{"SF", "SF", "SF", "SF", "SF", "SF", "RSTO", "RSTR", "REJ", "S0"}[t.rng.IntN(10)]
	}
}

// batch advances capture time by dt and returns the records of one flush:
// updates active flows (the next ones of the rotating set; one in
// endEvery of them ends and is replaced by a new flow) and samples packet
// samples of random active flows.
func (t *apiTraffic) batch(updates, endEvery, samples int, dt time.Duration) *ipc.Batch {
	from := t.now
	t.now = t.now.Add(dt)
	b := &ipc.Batch{}
	at := func() time.Time { return from.Add(time.Duration(t.rng.Int64N(int64(dt) + 1))) }
	for range min(updates, len(t.active)) {
		i := t.next
		t.next = (t.next + 1) % len(t.active)
		f := &t.active[i]
		t.grow(f, at())
		if endEvery > 0 && t.rng.IntN(endEvery) == 0 {
			t.end(f)
			b.Ended = append(b.Ended, *f)
			*f = t.newFlow(at())
			t.grow(f, f.FirstSeen.Time)
			continue
		}
		b.Flows = append(b.Flows, *f)
	}
	for range samples {
		f := &t.active[t.rng.IntN(len(t.active))]
		s := record.PacketSample{Timestamp: at().UnixMilli(), SrcIP: f.SrcIP, DstIP: f.DstIP,
			SrcPort: f.SrcPort, DstPort: f.DstPort, Protocol: f.Proto, Length: uint32(60 + t.rng.IntN(1455)), FlowID: f.ID}
		if t.rng.IntN(3) == 0 {
			s.SrcIP, s.DstIP, s.SrcPort, s.DstPort = f.DstIP, f.SrcIP, f.DstPort, f.SrcPort
		}
		b.Samples = append(b.Samples, s)
	}
	t.stats.KernelReceived = t.stats.Packets
	t.stats.FlowPackets = t.stats.Packets
	t.stats.Flows = t.made
	t.stats.ActiveFlows = uint64(len(t.active))
	b.Stats = t.stats
	return b
}

// ingestLoad drives the API server's socket with an ipc.Client, as a
// capturer does, and counts what the server acknowledged (committed).
type ingestLoad struct {
	c *ipc.Client

	mu    sync.Mutex
	sends []sentBatch
	flows, samples,
	ackedFlows, ackedSamples int // ackedX: of the sends acknowledged whole
	acked int // sends acknowledged whole
}

type sentBatch struct {
	lastSeq        uint64 // of its last frame (the client splits large batches)
	flows, samples int
}

func startIngest(tb testing.TB, socket string) *ingestLoad {
	tb.Helper()
	l := &ingestLoad{c: &ipc.Client{Path: socket, MaxPendingBytes: 256 << 20,
		Hello: ipc.Hello{Software: "bench", Interface: "bench0", LinkType: 1, StartTime: time.Now()}}}
	if err := l.c.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return l
}

// send queues b; the client assigns its seqs.
func (l *ingestLoad) send(tb testing.TB, b *ipc.Batch) {
	tb.Helper()
	if err := l.c.Send(b); err != nil {
		tb.Fatal(err)
	}
	st := l.c.Stats()
	l.mu.Lock()
	l.sends = append(l.sends, sentBatch{lastSeq: st.LastSeq, flows: len(b.Flows) + len(b.Ended), samples: len(b.Samples)})
	l.flows += len(b.Flows) + len(b.Ended)
	l.samples += len(b.Samples)
	l.mu.Unlock()
}

// progress updates the acknowledged counts and returns them.
func (l *ingestLoad) progress() (flows, samples, unacked int) {
	st := l.c.Stats()
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.acked < len(l.sends) && l.sends[l.acked].lastSeq <= st.AckedSeq {
		l.ackedFlows += l.sends[l.acked].flows
		l.ackedSamples += l.sends[l.acked].samples
		l.acked++
	}
	return l.ackedFlows, l.ackedSamples, len(l.sends) - l.acked
}

// waitUnacked waits until at most n sends are unacknowledged.
func (l *ingestLoad) waitUnacked(tb testing.TB, n int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, _, u := l.progress(); u <= n {
			return
		}
		if time.Now().After(deadline) {
			st := l.c.Stats()
			tb.Fatalf("%d batches unacknowledged after %v (client: %+v)", len(l.sends)-l.acked, timeout, st)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// close waits for every batch to be acknowledged and checks that the
// client dropped nothing.
func (l *ingestLoad) close(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := l.c.Close(ctx); err != nil {
		tb.Error(err)
	}
	if d := l.c.Stats().Dropped; d != (ipc.DropStats{}) {
		tb.Errorf("the ipc client dropped records: %+v", d)
	}
}

// latencies summarises request latencies.
type latencies struct {
	n, errs            int
	p50, p99, p999, mx time.Duration
	rate               float64       // requests/s achieved
	late               time.Duration // open loop: p99 of the delay from due to sent
}

func summarise(d []time.Duration, errs int, elapsed time.Duration) latencies {
	s := slices.Clone(d)
	slices.Sort(s)
	l := latencies{n: len(s), errs: errs}
	if len(s) == 0 {
		return l
	}
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	l.p50, l.p99, l.p999, l.mx = q(0.50), q(0.99), q(0.999), s[len(s)-1]
	if elapsed > 0 {
		l.rate = float64(len(s)) / elapsed.Seconds()
	}
	return l
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func (l latencies) String() string {
	s := fmt.Sprintf("p50 %s, p99 **%s**, p99.9 %s, max %s (%d requests", ms(l.p50), ms(l.p99), ms(l.p999), ms(l.mx), l.n)
	if l.rate > 0 {
		s += fmt.Sprintf(", %.0f/s", l.rate)
	}
	if l.errs > 0 {
		s += fmt.Sprintf(", %d errors", l.errs)
	}
	if l.late > 0 {
		s += fmt.Sprintf("; sent late by the generator: p99 %s", ms(l.late))
	}
	return s + ")"
}

// httpGet fetches url, reads the body and fails on a non-200 status.
func httpGet(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return err
}

func newHTTPClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, DisableCompression: true}}
}
