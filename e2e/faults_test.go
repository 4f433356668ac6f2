//go:build linux

package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// checkNothingLost checks, after the API server stopped, that the
// database holds every flow packet of capturer instance id (the flows'
// counters add up to the capture's flow_packets), that no final flow
// record was dropped, and that every packet sample is stored or counted
// as dropped or skipped, none twice.
func checkNothingLost(t *testing.T, p *product, id string, flows []record.Flow, st record.CaptureStats) {
	t.Helper()
	c := readDBCounts(t, p.db, id)
	pk, _ := flowTotals(flows)
	if pk != st.FlowPackets || uint64(c.FlowPackets) != st.FlowPackets {
		t.Errorf("flows hold %d packets; the capturer's last stats say %d (stored: %d)", pk, st.FlowPackets, c.FlowPackets)
	}
	if c.EndedDropped != 0 || c.EndedPackets != 0 {
		t.Errorf("the capturer dropped %d final flow records (%d packets): flow counters lost", c.EndedDropped, c.EndedPackets)
	}
	if got := uint64(c.Samples+c.SamplesDropped) + st.SamplesSkipped; got != st.FlowPackets {
		t.Errorf("samples: %d stored + %d dropped + %d skipped = %d, want one per flow packet (%d)",
			c.Samples, c.SamplesDropped, st.SamplesSkipped, got, st.FlowPackets)
	}
	t.Logf("stored %d samples; capturer dropped %d, skipped %d; coalesced %d batches, dropped %d updates; last seq %d",
		c.Samples, c.SamplesDropped, st.SamplesSkipped, c.BatchesCoalesced, c.UpdatesDropped, c.AppliedLastSeq)
}

// TestAPIServerKill9 kills the API server with SIGKILL ten times during a
// steady stream, restarting it each time on the same database and socket:
// in the end the API holds exactly what tcpdump saw, and what the
// capturer counted, with no sample stored twice.
func TestAPIServerKill9(t *testing.T) {
	setup(t)
	t.Parallel()
	tp := newTopo(t)
	tp.startHTTP(t)
	tp.startIperf(t)
	td := tp.startTcpdump(t)
	p := startSplit(t, tp, splitOptions{})
	id := p.health(t).Capturers[0].InstanceID
	s := tp.startStream(t, 20, "400K", 3*time.Minute)
	for i := range 10 {
		// Vary the moment within the flush interval.
		time.Sleep(time.Second + time.Duration(i)*137*time.Millisecond)
		p.api.kill9(t)
		p.startAPI(t)
		p.waitReconnected(t, id, 20*time.Second)
	}
	time.Sleep(time.Second)
	got, st, n := p.stopAndCompare(t, tp, id, s, td)
	t.Logf("compared %d flows after 10 kills", n)
	checkNothingLost(t, p, id, got, st)
}

// TestCapturerKill9 kills the capturer with SIGKILL: /api/health turns
// degraded within 5 s, the history stays queryable, and a restarted
// capturer (a new instance id) is accepted and its traffic arrives.
func TestCapturerKill9(t *testing.T) {
	setup(t)
	t.Parallel()
	tp := newTopo(t)
	tp.startHTTP(t)
	p := startSplit(t, tp, splitOptions{})
	first := p.health(t).Capturers[0].InstanceID
	for range 10 {
		run(t, 20*time.Second, tp.client, "curl", "-sf", "-o", "/dev/null", tp.url4("/small.txt"))
	}
	httpFlows := func() map[string]record.Flow {
		m := map[string]record.Flow{}
		for _, f := range p.flows(t) {
			if f.DstPort == httpPort {
				m[f.ID] = f
			}
		}
		return m
	}
	waitFor(t, 10*time.Second, "the HTTP flows in the API", func() bool { return len(httpFlows()) >= 10 })
	if h := p.health(t); h.Status != "ok" {
		t.Fatalf("health before the kill: %+v", h)
	}
	before := httpFlows()

	p.cap.kill9(t)
	killed := time.Now()
	var h health
	waitFor(t, 5*time.Second, "/api/health to turn degraded", func() bool {
		h = p.health(t)
		return h.Status == "degraded"
	})
	t.Logf("degraded %v after the kill: %q", time.Since(killed).Round(time.Millisecond), h.Reasons)

	// The history stays queryable.
	after := httpFlows()
	for id, b := range before {
		a, ok := after[id]
		if !ok || a.PacketsSent+a.PacketsReceived < b.PacketsSent+b.PacketsReceived {
			t.Errorf("flow %s before the kill: %s\n after: %s", id, jsonLine(b), jsonLine(a))
		}
	}
	for _, path := range []string{"/api/history?limit=10", "/api/stats", "/api/live", "/api/flows?port=8080&limit=5", "/metrics"} {
		if code, body := p.get(t, path); code != 200 {
			t.Errorf("GET %s with the capturer dead: %d %s", path, code, body)
		}
	}
	var samples []record.PacketSample
	p.getJSON(t, "/api/history?limit=10", &samples)
	if len(samples) == 0 {
		t.Error("/api/history is empty after the capturer died")
	}

	second := p.startCapturer(t)
	if second == first {
		t.Errorf("the restarted capturer has the old instance id %s", first)
	}
	waitFor(t, 10*time.Second, "health ok again", func() bool { return p.health(t).Status == "ok" })
	for _, c := range p.health(t).Capturers {
		if c.InstanceID == first && c.Connected {
			t.Errorf("the killed capturer %s still counts as connected", first)
		}
	}
	for range 5 {
		run(t, 20*time.Second, tp.client, "curl", "-sf", "-o", "/dev/null", tp.url6("/small.txt"))
	}
	waitFor(t, 10*time.Second, "the new capturer's flows", func() bool { return len(httpFlows()) >= 15 })
	p.stopAll(t)
}

// TestDiskFull puts the database on a small tmpfs and fills it while
// traffic flows: health turns degraded naming the full store, the API
// server does not crash and keeps answering, and once space returns it
// recovers and nothing is lost (the flows equal tcpdump's).
func TestDiskFull(t *testing.T) {
	setup(t)
	t.Parallel()
	tp := newTopo(t)
	tp.startHTTP(t)
	tp.startIperf(t)
	data := filepath.Join(tp.dir, "tmpfs")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, 10*time.Second, "", "mount", "-t", "tmpfs", "-o", "size=8m,mode=0770,uid=65532,gid=65533", "tmpfs", data)
	// Registered before the processes start: runs after they are killed.
	t.Cleanup(func() {
		if out, err := runErr(10*time.Second, "", "umount", data); err != nil {
			t.Errorf("umount %s: %v %s", data, err, out)
			runErr(10*time.Second, "", "umount", "-l", data)
		}
	})
	td := tp.startTcpdump(t)
	p := startSplit(t, tp, splitOptions{dataDir: data})
	id := p.health(t).Capturers[0].InstanceID
	s := tp.startStream(t, 20, "800K", 3*time.Minute)
	time.Sleep(3 * time.Second)

	filler := filepath.Join(data, "filler")
	fill(t, filler)
	var h health
	waitFor(t, 60*time.Second, "health degraded by the full disk", func() bool {
		h = p.health(t)
		return h.Status == "degraded" && h.StoreError != ""
	})
	t.Logf("with the disk full: %q", h.Reasons)
	if !strings.Contains(strings.Join(h.Reasons, " "), "full") {
		t.Errorf("health reasons %q do not say the store is full", h.Reasons)
	}
	// Still serving, and the history still reads.
	time.Sleep(3 * time.Second)
	if p.api.exited() {
		t.Fatalf("the API server exited with the disk full:\n%s", tail(p.api.out.String(), 4096))
	}
	for _, path := range []string{"/api/flows?limit=5", "/api/history?limit=5", "/api/stats"} {
		if code, body := p.get(t, path); code != 200 {
			t.Errorf("GET %s with the disk full: %d %s", path, code, body)
		}
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "health ok once space returned", func() bool {
		h = p.health(t)
		return h.Status == "ok"
	})
	time.Sleep(2 * time.Second)
	p.stopAndCompare(t, tp, id, s, td)
	if p.api.exited() && strings.Contains(p.api.out.String(), "panic") {
		t.Errorf("the API server panicked:\n%s", tail(p.api.out.String(), 4096))
	}
}

// fill writes zeros to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

var captureDone = regexp.MustCompile(`capture done" packets=(\d+) flows=(\d+)`)

// TestSIGTERMUnderLoad stops each process with SIGTERM while iperf3 and an
// HTTP stream run: both exit 0, and the capturer's last batch is committed
// (the API's statistics equal those the capturer logged at exit, and its
// flows add up to them).
func TestSIGTERMUnderLoad(t *testing.T) {
	setup(t)
	t.Parallel()
	tp := newTopo(t)
	tp.startHTTP(t)
	tp.startIperf(t)
	p := startSplit(t, tp, splitOptions{})
	id := p.health(t).Capturers[0].InstanceID
	s := tp.startStream(t, 20, "", time.Minute)
	load := startProc(t, tp.client, "iperf3 tcp load", nil, "iperf3", "-c", tp.B4.String(), "-p", strconv.Itoa(iperfPort), "-b", "20M", "-t", "60")
	time.Sleep(3 * time.Second)

	// The API server, under load.
	p.api.stop(t, 10*time.Second)
	if out := p.api.out.String(); !strings.Contains(out, "shutting down") || strings.Contains(out, "level=ERROR") {
		t.Errorf("API server log at SIGTERM:\n%s", tail(out, 4096))
	}
	p.startAPI(t)
	p.waitReconnected(t, id, 20*time.Second)
	time.Sleep(3 * time.Second)

	// The capturer, under load.
	p.cap.stop(t, 10*time.Second)
	m := captureDone.FindStringSubmatch(p.cap.out.String())
	if m == nil {
		t.Fatalf("the capturer did not log its totals:\n%s", tail(p.cap.out.String(), 4096))
	}
	packets, _ := strconv.ParseUint(m[1], 10, 64)
	flowCount, _ := strconv.ParseUint(m[2], 10, 64)
	st := p.capturerStats(t, id)
	if st.Packets != packets || st.Flows != flowCount {
		t.Errorf("the API has the capturer's stats at %d packets, %d flows; it exited at %d packets, %d flows: the last batch is missing",
			st.Packets, st.Flows, packets, flowCount)
	}
	got := p.flows(t)
	pk, _ := flowTotals(got)
	if pk != st.FlowPackets || uint64(len(got)) != flowCount {
		t.Errorf("the API holds %d flows with %d packets; the capturer counted %d flows, %d flow packets", len(got), pk, flowCount, st.FlowPackets)
	}
	for _, f := range got {
		if f.EndReason == "" {
			t.Errorf("flow %s not ended after the capturer exited: %s", f.ID, jsonLine(f))
		}
	}
	t.Logf("capturer exited at %d packets, %d flows, all committed", packets, flowCount)

	load.signal(t, syscall.SIGINT)
	load.wait(10 * time.Second)
	s.stop(t)
	p.stopAPI(t)
	integrityCheck(t, p.db)
}
