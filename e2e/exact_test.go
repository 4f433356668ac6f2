//go:build linux

package e2e

import (
	"slices"
	"testing"
	"time"

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
	p.stopAPI(t)
	integrityCheck(t, p.db)
}
