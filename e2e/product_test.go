//go:build linux

package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// apiAddr is where the API server listens inside the server namespace:
// loopback, so that the test's own API requests never cross the watched
// interface. Each test has its own namespace, so the port is free.
const apiAddr = "127.0.0.1:3000"

// product is LightShark-mini deployed in the server namespace.
type product struct {
	tp   *topo
	dir  string // the deployment's files
	sock string // the Unix socket, in a directory both uids share
	db   string // the SQLite file

	// apiArgs and capArgs are added to the commands at each (re)start.
	apiArgs, capArgs []string

	api, cap *proc
	mini     *proc // deployment (a): the supervisor of api and cap
	http     *http.Client
	base     string // "http://127.0.0.1:3000"
}

// splitOptions adjust deployment (b).
type splitOptions struct {
	dataDir string   // the database's directory (default: a new one in the topology's)
	apiArgs []string // more API server flags
	capArgs []string // more capturer flags
	noStart bool     // do not start the capturer
}

// startSplit is deployment (b), the two-container pod without containers:
// lightshark-apiserver as uid 65532 with no capability and
// lightshark-capturer as uid 65534 with only ambient CAP_NET_RAW, both in
// the server's namespace, sharing a socket directory owned by their
// common group, the API server accepting the capturer's uid.
func startSplit(t *testing.T, tp *topo, o splitOptions) *product {
	t.Helper()
	p := &product{tp: tp, dir: filepath.Join(tp.dir, "product"), apiArgs: o.apiArgs, capArgs: o.capArgs}
	run := filepath.Join(p.dir, "run")
	data := o.dataDir
	if data == "" {
		data = filepath.Join(p.dir, "data")
	}
	for _, d := range []string{p.dir, run, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{run, data} {
		if err := os.Chown(d, apiUID, sharedGID); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o770); err != nil {
			t.Fatal(err)
		}
	}
	p.sock = filepath.Join(run, "ipc.sock")
	p.db = filepath.Join(data, "traffic.db")
	p.http = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext: nsDialer(tp.server), MaxIdleConnsPerHost: 16,
	}}
	t.Cleanup(p.http.CloseIdleConnections)
	p.base = "http://" + apiAddr
	p.startAPI(t)
	if !o.noStart {
		p.startCapturer(t)
	}
	return p
}

// startSupervised is deployment (a): lightshark-mini started as root in
// the server's namespace, doing the split itself (the API server as 65532
// with no capability, the capturer as 65534 with ambient CAP_NET_RAW that
// it drops). p.mini is the supervisor; p.api and p.cap stay nil until
// stopCapture.
func startSupervised(t *testing.T, tp *topo) *product {
	t.Helper()
	p := &product{tp: tp, dir: filepath.Join(tp.dir, "product")}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.sock = filepath.Join(p.dir, "run", "ipc.sock")
	p.db = filepath.Join(p.dir, "data", "traffic.db") // lightshark-mini makes the directory for the API server
	p.http = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext: nsDialer(tp.server), MaxIdleConnsPerHost: 16,
	}}
	t.Cleanup(p.http.CloseIdleConnections)
	p.base = "http://" + apiAddr
	args := append([]string{miniBin, "-i", tp.dev, "--listen", apiAddr, "--db-path", p.db, "--socket", p.sock}, capturerFlags...)
	p.mini = startProc(t, tp.server, "lightshark-mini", nil, args...)
	waitFor(t, 20*time.Second, "lightshark-mini's capturer to connect", func() bool {
		if p.mini.exited() {
			t.Fatalf("lightshark-mini exited:\n%s", p.mini.out.String())
		}
		resp, err := p.http.Get(p.base + "/api/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var h health
		return json.NewDecoder(resp.Body).Decode(&h) == nil && len(h.Capturers) == 1 && h.Capturers[0].Connected
	})
	return p
}

// stopCapture stops the capture so that every flow is final and
// committed, and returns the capturer's last statistics. Deployment (b):
// SIGTERM to the capturer. Deployment (a): SIGTERM to lightshark-mini,
// which must exit 0 within 5 s having committed the last batch; the
// statistics are then read from the database and an API server is started
// on it alone, to answer the comparison's queries.
func (p *product) stopCapture(t *testing.T, id string) record.CaptureStats {
	t.Helper()
	if p.mini == nil {
		p.cap.stop(t, 10*time.Second)
		return p.capturerStats(t, id)
	}
	p.mini.stop(t, 5*time.Second)
	db, err := sql.Open("sqlite", "file:"+p.db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var st record.CaptureStats
	err = db.QueryRow(`SELECT s.packets, s.kernel_received, s.kernel_drops, s.flows FROM capture_stats s
		JOIN capturers c ON c.rid = s.capturer_id WHERE c.instance_id = ? ORDER BY s.ts DESC, s.packets DESC LIMIT 1`, id).
		Scan(&st.Packets, &st.KernelReceived, &st.KernelDrops, &st.Flows)
	if err != nil {
		t.Fatalf("the capturer's last statistics in %s: %v", p.db, err)
	}
	p.startAPI(t)
	return st
}

// nsDialer dials from inside network namespace ns: the socket is made on
// a thread that joined it, and stays there.
func nsDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := testenv.InNetns(ns, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// startAPI (re)starts the API server and waits until it answers.
func (p *product) startAPI(t *testing.T) {
	t.Helper()
	args := append([]string{apiBin, "--socket", p.sock, "--db-path", p.db, "--listen", apiAddr,
		"--capturer-uid", fmt.Sprint(capturerUID)}, p.apiArgs...)
	p.api = startProc(t, p.tp.server, "lightshark-apiserver", asAPI, args...)
	waitFor(t, 20*time.Second, "the API server to answer", func() bool {
		if p.api.exited() {
			t.Fatalf("the API server exited:\n%s", p.api.out.String())
		}
		resp, err := p.http.Get(p.base + "/api/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	p.api.requirePrivileges(t, apiUID)
}

// capturerFlags are the flow settings the capturer and the oracle (the
// capturer's offline mode on tcpdump's file) share.
var capturerFlags = []string{"--connection-timeout", "300", "--closed-timeout", "5"}

// startCapturer (re)starts the capturer and waits until the API server
// has a batch from the new instance, whose id it returns.
func (p *product) startCapturer(t *testing.T) string {
	t.Helper()
	before := map[string]bool{}
	for _, c := range p.health(t).Capturers {
		before[c.InstanceID] = true
	}
	args := append(append([]string{capturerBin, "-i", p.tp.dev, "--socket", p.sock}, capturerFlags...), p.capArgs...)
	p.cap = startProc(t, p.tp.server, "lightshark-capturer", asCapturer, args...)
	var id string
	waitFor(t, 20*time.Second, "a batch from the new capturer", func() bool {
		if p.cap.exited() {
			t.Fatalf("the capturer exited:\n%s", p.cap.out.String())
		}
		for _, c := range p.health(t).Capturers {
			if !before[c.InstanceID] && c.Connected && c.Batches > 0 {
				id = c.InstanceID
				return true
			}
		}
		return false
	})
	p.cap.requirePrivileges(t, capturerUID)
	return id
}

// health is GET /api/health (the fields the tests read).
type health struct {
	Status             string              `json:"status"`
	Reasons            []string            `json:"reasons"`
	TotalPackets       uint64              `json:"total_packets"`
	CapturersConnected int                 `json:"capturers_connected"`
	StoreError         string              `json:"store_error"`
	Capture            record.CaptureStats `json:"capture"`
	Capturers          []struct {
		InstanceID string              `json:"instance_id"`
		Connected  bool                `json:"connected"`
		Finished   bool                `json:"finished"`
		LastSeq    uint64              `json:"last_seq"`
		Batches    uint64              `json:"batches"`
		Stats      record.CaptureStats `json:"stats"`
	} `json:"capturers"`
}

func (p *product) health(t testing.TB) health {
	t.Helper()
	var h health
	p.getJSON(t, "/api/health", &h)
	return h
}

// waitReconnected waits until capturer instance id is connected again and
// has had a batch committed.
func (p *product) waitReconnected(t *testing.T, id string, d time.Duration) {
	t.Helper()
	waitFor(t, d, "the capturer to reconnect", func() bool {
		for _, c := range p.health(t).Capturers {
			if c.InstanceID == id && c.Connected && c.Batches > 0 {
				return true
			}
		}
		return false
	})
}

// stopAndCompare ends a fault test's run: it stops the traffic s, the
// capturer id and tcpdump td, compares the API's flows with tcpdump's
// (compareWithOracle), stops the API server and checks the database's
// integrity. It returns the flows, the capturer's final statistics and
// the number of flows compared.
func (p *product) stopAndCompare(t *testing.T, tp *topo, id string, s *stream, td *tcpdump) ([]record.Flow, record.CaptureStats, int) {
	t.Helper()
	s.stop(t)
	p.cap.stop(t, 10*time.Second)
	td.stop(t)
	st := p.capturerStats(t, id)
	got := p.flows(t)
	n := compareWithOracle(t, tp, got, oracle(t, td.file), st.KernelDrops)
	p.stopAPI(t)
	integrityCheck(t, p.db)
	return got, st, n
}

// capturerStats returns the latest statistics of capturer instance id.
func (p *product) capturerStats(t testing.TB, id string) record.CaptureStats {
	t.Helper()
	for _, c := range p.health(t).Capturers {
		if c.InstanceID == id {
			return c.Stats
		}
	}
	t.Fatalf("capturer %s not in /api/health", id)
	return record.CaptureStats{}
}

// get does GET path and returns the status and body.
func (p *product) get(t testing.TB, path string) (int, []byte) {
	t.Helper()
	resp, err := p.http.Get(p.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, b
}

func (p *product) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	code, b := p.get(t, path)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

// flows returns every stored flow (GET /api/flows?format=ndjson).
func (p *product) flows(t testing.TB) []record.Flow {
	t.Helper()
	resp, err := p.http.Get(p.base + "/api/flows?format=ndjson")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /api/flows?format=ndjson: %s %s", resp.Status, b)
	}
	return readJSONL(t, resp.Body, "/api/flows?format=ndjson")
}

func readJSONL(t testing.TB, r io.Reader, what string) []record.Flow {
	t.Helper()
	var flows []record.Flow
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var f record.Flow
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil || f.ID == "" {
			t.Fatalf("%s: line %q is not a flow (%v)", what, sc.Text(), err)
		}
		flows = append(flows, f)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return flows
}

// oracle returns the flows of tcpdump's file, read by the capturer's
// offline mode with the live capture's flow settings.
func oracle(t testing.TB, pcap string) []record.Flow {
	t.Helper()
	args := append([]string{capturerBin, "--read", pcap, "--output", "jsonl", "-q"}, capturerFlags...)
	out := run(t, 2*time.Minute, "", args...)
	return readJSONL(t, strings.NewReader(out), "the oracle")
}

// stopAll stops the capturer, then the API server, each with SIGTERM and a
// clean exit, and checks the database.
func (p *product) stopAll(t *testing.T) {
	t.Helper()
	if p.cap != nil && !p.cap.exited() {
		p.cap.stop(t, 10*time.Second)
	}
	p.stopAPI(t)
	integrityCheck(t, p.db)
}

func (p *product) stopAPI(t *testing.T) {
	t.Helper()
	if !p.api.exited() {
		p.api.stop(t, 10*time.Second)
	}
	if strings.Contains(p.api.out.String(), "level=ERROR") {
		t.Logf("API server logged errors:\n%s", tail(p.api.out.String(), 4096))
	}
}

// openDB opens the database read-only (the API server has stopped).
func openDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// integrityCheck requires PRAGMA integrity_check to answer ok.
func integrityCheck(t testing.TB, path string) {
	t.Helper()
	db := openDB(t, path)
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	defer rows.Close()
	var res []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		res = append(res, s)
	}
	if !slices.Equal(res, []string{"ok"}) {
		t.Errorf("PRAGMA integrity_check on %s: %v", path, res)
	}
	db.Close()
}

// dbCounts reads, after the API server stopped, the sampled packets stored
// and the capture statistics last stored for capturer instance id: the
// IPC client's drop counters live only there.
type dbCounts struct {
	Samples                                        int64
	Packets, FlowPackets, KernelDrops              int64
	SamplesDropped, UpdatesDropped, EndedDropped   int64
	BatchesCoalesced, EndedPackets, AppliedLastSeq int64
}

func readDBCounts(t testing.TB, path, instance string) dbCounts {
	t.Helper()
	db := openDB(t, path)
	var c dbCounts
	if err := db.QueryRow("SELECT count(*) FROM packets").Scan(&c.Samples); err != nil {
		t.Fatal(err)
	}
	err := db.QueryRow(`SELECT s.packets, s.flow_packets, s.kernel_drops, s.samples_dropped, s.updates_dropped,
		s.ended_dropped, s.batches_coalesced, s.ended_packets
		FROM capture_stats s JOIN capturers c ON c.rid = s.capturer_id
		WHERE c.instance_id = ? ORDER BY s.ts DESC LIMIT 1`, instance).Scan(
		&c.Packets, &c.FlowPackets, &c.KernelDrops, &c.SamplesDropped, &c.UpdatesDropped,
		&c.EndedDropped, &c.BatchesCoalesced, &c.EndedPackets)
	if err != nil {
		t.Fatalf("capture_stats of %s: %v", instance, err)
	}
	if err := db.QueryRow("SELECT last_seq FROM applied_batches WHERE instance_id = ?", instance).Scan(&c.AppliedLastSeq); err != nil {
		t.Fatalf("applied_batches of %s: %v", instance, err)
	}
	return c
}
