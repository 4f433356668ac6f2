//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// flowKey names a flow by its 5-tuple: the two captures of the same
// traffic stamp packets microseconds apart, so their flow ids (a hash of
// the key and the first packet's time) differ.
func flowKey(f record.Flow) string {
	return fmt.Sprintf("%s %s > %s", f.Proto, endpoint(f.SrcIP, f.SrcPort), endpoint(f.DstIP, f.DstPort))
}

func endpoint(ip string, port uint16) string {
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}

// indexFlows keys flows by 5-tuple; a reused 5-tuple's later flows (by
// first_seen) get " #2", " #3"…
func indexFlows(flows []record.Flow) map[string]record.Flow {
	sorted := slices.Clone(flows)
	slices.SortStableFunc(sorted, func(a, b record.Flow) int { return a.FirstSeen.Compare(b.FirstSeen.Time) })
	m := map[string]record.Flow{}
	for _, f := range sorted {
		k := flowKey(f)
		for n := 2; ; n++ {
			if _, dup := m[k]; !dup {
				break
			}
			k = fmt.Sprintf("%s #%d", flowKey(f), n)
		}
		m[k] = f
	}
	return m
}

// near compares the two captures' timestamps of the same packet.
func near(a, b record.Time) bool {
	d := a.Sub(b.Time)
	return d < 10*time.Millisecond && d > -10*time.Millisecond
}

// sameCounters reports whether two records of a flow agree on what the
// contract makes exact: packets and bytes per direction, history (up to
// the order of simultaneous packets), state, Community ID and (within the
// two sockets' stamping) times.
func sameCounters(g, w record.Flow) bool {
	return g.PacketsSent == w.PacketsSent && g.BytesSent == w.BytesSent &&
		g.PacketsReceived == w.PacketsReceived && g.BytesReceived == w.BytesReceived &&
		testenv.SameHistory(g.History, w.History) && g.State == w.State && g.CommunityID == w.CommunityID &&
		near(g.FirstSeen, w.FirstSeen) && near(g.LastSeen, w.LastSeen)
}

func jsonLine(f record.Flow) string {
	b, _ := json.Marshal(f)
	return string(b)
}

// compareWithOracle compares the API's flows of the test's traffic with the
// oracle's, per flow and per direction. With kernelDrops 0 they must be
// equal; otherwise no flow may have more than the oracle's, and the
// packets missing must be exactly kernelDrops. Differences are reported
// with both records. It returns the number of flows compared.
func compareWithOracle(t *testing.T, tp *topo, api, want []record.Flow, kernelDrops uint64) int {
	t.Helper()
	got, exp := indexFlows(api), indexFlows(want)
	var keys []string
	for k, w := range exp {
		if tp.ours(w.Proto, w.SrcIP, w.DstIP, w.SrcPort) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var missing uint64
	bad := 0
	report := func(format string, args ...any) {
		bad++
		if bad <= 30 {
			t.Errorf(format, args...)
		}
	}
	for _, k := range keys {
		w := exp[k]
		g, ok := got[k]
		if !ok {
			missing += w.PacketsSent + w.PacketsReceived
			if kernelDrops == 0 {
				report("flow %s: in the oracle, not in the API\n oracle %s", k, jsonLine(w))
			}
			continue
		}
		if kernelDrops == 0 {
			if !sameCounters(g, w) {
				report("flow %s differs:\n api    %s\n oracle %s", k, jsonLine(g), jsonLine(w))
			}
		} else {
			if g.PacketsSent > w.PacketsSent || g.PacketsReceived > w.PacketsReceived {
				report("flow %s: more packets than the oracle:\n api    %s\n oracle %s", k, jsonLine(g), jsonLine(w))
			}
			missing += w.PacketsSent + w.PacketsReceived - min(w.PacketsSent+w.PacketsReceived, g.PacketsSent+g.PacketsReceived)
		}
		if g.DstIP == tp.B4.String() || g.DstIP == tp.B6.String() {
			if g.Direction != record.DirInbound {
				report("flow %s: direction %q, want inbound", k, g.Direction)
			}
		}
	}
	for k, g := range got {
		if _, ok := exp[k]; !ok && tp.ours(g.Proto, g.SrcIP, g.DstIP, g.SrcPort) {
			report("flow %s: in the API, not in the oracle\n api %s", k, jsonLine(g))
		}
	}
	if kernelDrops > 0 && missing != kernelDrops {
		t.Errorf("the kernel dropped %d packets, but the API lacks %d of the oracle's", kernelDrops, missing)
	}
	if bad > 30 {
		t.Errorf("… and %d more differences", bad-30)
	}
	if len(keys) == 0 {
		t.Error("the oracle has no flow of the test's traffic")
	}
	return len(keys)
}

// pagedFlows walks /api/flows page by page with the cursor.
func (p *product) pagedFlows(t *testing.T, limit int) []record.Flow {
	t.Helper()
	var all []record.Flow
	cursor := ""
	for pages := 0; ; pages++ {
		var page struct {
			Flows      []record.Flow `json:"flows"`
			NextCursor string        `json:"next_cursor"`
		}
		p.getJSON(t, fmt.Sprintf("/api/flows?limit=%d&cursor=%s", limit, url.QueryEscape(cursor)), &page)
		all = append(all, page.Flows...)
		if page.NextCursor == "" {
			return all
		}
		cursor = page.NextCursor
		if pages > 10000 {
			t.Fatal("pagination does not end")
		}
	}
}

// flowTotals sums packets and bytes over flows, both directions.
func flowTotals(flows []record.Flow) (packets, bytes uint64) {
	for _, f := range flows {
		packets += f.PacketsSent + f.PacketsReceived
		bytes += f.BytesSent + f.BytesReceived
	}
	return
}
