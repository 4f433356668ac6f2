//go:build linux

package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// TestExactness_Split runs the traffic mix against deployment (b)
// and requires /api/flows to equal tcpdump's capture of the same traffic,
// read back by the capturer's offline mode, flow by flow and direction by
// direction.
func TestExactness_Split(t *testing.T) {
	setup(t)
	t.Parallel()
	exactness(t, func(t *testing.T, tp *topo) *product { return startSplit(t, tp, splitOptions{}) })
}

// TestExactness_Supervisor is deployment (a): lightshark-mini as root doing
// the split itself, against the same oracle.
func TestExactness_Supervisor(t *testing.T) {
	setup(t)
	t.Parallel()
	exactness(t, startSupervised)
}

// exactness is the exactness test for one deployment: start deploys the
// product in tp's server namespace, with tcpdump already capturing beside
// it.
func exactness(t *testing.T, start func(*testing.T, *topo) *product) {
	tp := newTopo(t)
	tp.startHTTP(t)
	tp.startIperf(t)
	tp.startDNS(t)
	td := tp.startTcpdump(t)
	p := start(t, tp)
	id := p.health(t).Capturers[0].InstanceID

	tp.mixedTraffic(t)
	time.Sleep(time.Second) // the last packets reach both sockets

	// SIGTERM: the capturer ends every flow, sends its last batch and
	// exits 0 once the API server committed it.
	stats := p.stopCapture(t, id)
	td.stop(t)
	got := p.flows(t)
	want := oracle(t, td.file)
	n := compareWithOracle(t, tp, got, want, stats.KernelDrops)

	// The paginated listing holds the same flows as the export.
	paged := p.pagedFlows(t, 7)
	ids := func(fs []record.Flow) []string {
		var s []string
		for _, f := range fs {
			s = append(s, f.ID)
		}
		slices.Sort(s)
		return s
	}
	if a, b := ids(paged), ids(got); !slices.Equal(a, b) {
		t.Errorf("paginated /api/flows has %d flows, the NDJSON export %d (or other ids)", len(a), len(b))
	}

	// The traffic is really there.
	var http, refused, dns, udp, icmp4, icmp6, frags uint64
	for _, f := range want {
		switch {
		case f.DstPort == httpPort && f.State == "SF":
			http++
		case f.DstPort == closedTCP && f.State == "REJ":
			refused++
		case f.DstPort == 53:
			dns++
		case f.Proto == "udp" && f.DstPort == iperfPort:
			udp++
		case f.Proto == "icmp" && f.SrcPort == 8:
			icmp4++
			frags += f.PacketsSent
		case f.Proto == "icmpv6" && f.SrcPort == 128:
			icmp6++
		}
	}
	if http < 32 || refused != 1 || dns < 3 || udp != 1 || icmp4 != 1 || icmp6 != 1 || frags != 9 {
		t.Errorf("traffic seen by the oracle: %d HTTP flows (want >= 32), %d refused (1), %d DNS (>= 3), %d iperf3 UDP (1), %d ping (1), %d ping6 (1), %d IPv4 echo fragments (9)",
			http, refused, dns, udp, icmp4, icmp6, frags)
	}
	pk, by := flowTotals(got)
	t.Logf("compared %d flows with the oracle; API holds %d flows, %d packets, %d bytes; capture stats %+v",
		n, len(got), pk, by, stats)
	if p.api != nil {
		checkMemoryMetrics(t, p)
	}
	p.stopAPI(t)
	integrityCheck(t, p.db)
}

// checkMemoryMetrics compares what the API server's /metrics says of its
// memory with what the kernel says of the process: the resident set within
// a quarter (it moves between the two reads), and SQLite's share of it
// above zero and below the whole. In the supervised deployment the API
// server read here is one started again on the database after the stop.
func checkMemoryMetrics(t *testing.T, p *product) {
	t.Helper()
	code, body := p.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.api.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("expfmt: %v", err)
	}
	value := func(name string) float64 {
		f, ok := fams[name]
		if !ok || len(f.GetMetric()) != 1 {
			t.Errorf("/metrics has no single sample of %s", name)
			return -1
		}
		m := f.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	var vmRSS float64
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			vmRSS = kb * 1024
		}
	}
	rss, sqlite, cpu := value("process_resident_memory_bytes"), value("lightshark_sqlite_memory_bytes"), value("process_cpu_seconds_total")
	t.Logf("API server: process_resident_memory_bytes %.1f MiB, VmRSS %.1f MiB, lightshark_sqlite_memory_bytes %.1f MiB, go_memstats_sys_bytes %.1f MiB, process_cpu_seconds_total %.2f",
		rss/(1<<20), vmRSS/(1<<20), sqlite/(1<<20), value("go_memstats_sys_bytes")/(1<<20), cpu)
	if vmRSS == 0 || rss < vmRSS*3/4 || rss > vmRSS*5/4 {
		t.Errorf("process_resident_memory_bytes %.0f, the kernel's VmRSS %.0f", rss, vmRSS)
	}
	if sqlite <= 0 || sqlite >= rss {
		t.Errorf("lightshark_sqlite_memory_bytes %.0f with a resident set of %.0f", sqlite, rss)
	}
	if cpu < 0 { // counted in 10 ms ticks: a server started for the reading may show 0
		t.Errorf("process_cpu_seconds_total %v", cpu)
	}
}
