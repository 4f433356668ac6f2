package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/store"
)

// apiFlowsStart is the capture time of the first flow of the /api/flows
// database; its flows span the 24 hours after it.
var apiFlowsStart = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// BenchmarkAPIFlows measures GET /api/flows on the real API server over a
// database of LIGHTSHARK_BENCH_API_FLOWS (default 1,000,000) flow records:
// a day of a busy service's connections from the apiTraffic model (the
// container's own address in every flow, Zipf-distributed peers, TCP to
// 443/80/5432/6379/8080, DNS, QUIC, NTP, ICMP), written once through
// pkg/store and cached in bench/out. Each query runs
// LIGHTSHARK_BENCH_API_QUERIES times (default 200), one request at a time,
// after 5 unmeasured ones: the default page, filters by address (the
// container's own, a peer in about 15 % of the flows, one in about 0.1 %,
// one in a few), by port and protocol (common and less so), order by
// bytes, and a cursor page 500,000 rows deep.
func BenchmarkAPIFlows(b *testing.B) {
	rows := envInt(b, "LIGHTSHARK_BENCH_API_FLOWS", defaultAPIFlowRows)
	n := envInt(b, "LIGHTSHARK_BENCH_API_QUERIES", defaultAPIQueries)
	path := flowsDB(b, rows)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	results.input("`%s`: %d flow records over 24 h of capture time (apiTraffic, seed 44), %.0f MiB", filepath.Base(path), rows, float64(fi.Size())/(1<<20))
	for range b.N {
		// Nothing is written: no capturer, retention far beyond the
		// flows' age, a size bound beyond the file.
		srv := startAPIServer(b, path, "--data-retention", "315360000", "--max-db-size", "64GiB")
		hc := newHTTPClient(1)

		deep, depth := "", min(500_000, rows/2)/1000*1000
		if depth > 0 {
			for seen := 0; seen < depth; seen += 1000 {
				page := getFlows(b, hc, srv.base+"/api/flows?limit=1000&cursor="+deep)
				if page.NextCursor == "" {
					b.Fatalf("no next page after %d rows", seen)
				}
				deep = page.NextCursor
			}
		}
		for _, q := range []struct{ name, query string }{
			{"default (newest 100)", ""},
			{"ip = the container's own (every flow)", "ip=" + apiOwn4.String()},
			{"ip = a peer in ≈15 % of flows", "ip=" + apiPeer(0).String()},
			{"ip = a peer in ≈0.1 % of flows", "ip=" + apiPeer(99).String()},
			{"ip = a rare peer", "ip=" + apiPeer(1500).String()},
			{"port=443", "port=443"},
			{"port=5432", "port=5432"},
			{"port=123", "port=123"},
			{"proto=udp", "proto=udp"},
			{"proto=icmp", "proto=icmp"},
			{"ip=own & port=5432 & proto=tcp", "ip=" + apiOwn4.String() + "&port=5432&proto=tcp"},
			{"order=bytes", "order=bytes"},
			{fmt.Sprintf("cursor page %d rows deep", depth), "cursor=" + url.QueryEscape(deep)},
		} {
			u := srv.base + "/api/flows?" + q.query
			first := getFlows(b, hc, u)
			for range 4 {
				getFlows(b, hc, u)
			}
			lat := make([]time.Duration, n)
			errs := 0
			for i := range n {
				t0 := time.Now()
				if err := httpGet(hc, u); err != nil {
					errs++
				}
				lat[i] = time.Since(t0)
			}
			l := summarise(lat, errs, 0)
			results.add(secAPI, fmt.Sprintf("`GET /api/flows?%s` over %d rows: %s (%d flows in the page)", shortQuery(q.query), rows, q.name, len(first.Flows)),
				l.String(), "p99 < "+ms(targetFlowsP99), errs == 0 && l.p99 < targetFlowsP99)
		}
		// The dashboard's history chart: /api/series over an hour and
		// over the whole day (each flow spread over its lifetime, as
		// without --aggregation-window), by protocol and by peer.
		// Fewer runs: the day reads every row.
		day := apiFlowsStart.Format(time.RFC3339) + "&until=" + apiFlowsStart.Add(24*time.Hour).Format(time.RFC3339)
		hour := apiFlowsStart.Add(12*time.Hour).Format(time.RFC3339) + "&until=" + apiFlowsStart.Add(13*time.Hour).Format(time.RFC3339)
		for _, q := range []struct{ name, query string }{
			{"an hour by protocol", "since=" + hour},
			{"the day by protocol", "since=" + day},
			{"the day by peer", "since=" + day + "&by=peer"},
		} {
			u := srv.base + "/api/series?" + q.query
			if err := httpGet(hc, u); err != nil {
				b.Fatalf("GET %s: %v", u, err)
			}
			lat := make([]time.Duration, max(n/10, 5))
			errs := 0
			for i := range lat {
				t0 := time.Now()
				if err := httpGet(hc, u); err != nil {
					errs++
				}
				lat[i] = time.Since(t0)
			}
			l := summarise(lat, errs, 0)
			results.add(secAPI, fmt.Sprintf("`GET /api/series` over %d rows: %s (the dashboard's history chart)", rows, q.name),
				l.String(), "", errs == 0)
		}
		srv.rssRow(fmt.Sprintf("serving /api/flows over %d rows", rows))
		srv.stop(b)
	}
}

func shortQuery(q string) string {
	if len(q) > 40 {
		return q[:20] + "…"
	}
	return q
}

type flowsPage struct {
	Flows      []record.Flow `json:"flows"`
	NextCursor string        `json:"next_cursor"`
}

func getFlows(tb testing.TB, hc *http.Client, u string) flowsPage {
	tb.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var p flowsPage
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		tb.Fatalf("GET %s: %v", u, err)
	}
	return p
}

// flowsDB returns the cached database of rows flow records, writing it
// through pkg/store when missing (under a temporary name, renamed when
// complete).
func flowsDB(tb testing.TB, rows int) string {
	tb.Helper()
	genMu.Lock()
	defer genMu.Unlock()
	path := filepath.Join(mustOutDir(tb), fmt.Sprintf("api-flows-%s-%d.db", apiTrafficGen, rows))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tmp := path + ".tmp"
	for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
		os.Remove(p)
	}
	start := time.Now()
	ctx := context.Background()
	db, err := store.Open(ctx, tmp, store.Options{Retention: -1, MaxSize: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tr := newAPITraffic(44, 0, apiFlowsStart)
	c := store.Capturer{InstanceID: "bench-flows", Hostname: "bench", Software: "bench", Interface: "eth0", LinkType: 1}
	const per = 10_000
	step := 24 * time.Hour / time.Duration(rows)
	var seq uint64
	for done := 0; done < rows; done += per {
		sb := &store.Batch{ReceivedAt: apiFlowsStart.Add(time.Duration(done) * step)}
		for i := range min(per, rows-done) {
			first := apiFlowsStart.Add(time.Duration(done+i) * step)
			f := tr.newFlow(first)
			for range 1 + tr.rng.IntN(8) {
				tr.grow(&f, first.Add(time.Duration(tr.rng.Int64N(int64(30*time.Second)))))
			}
			tr.end(&f)
			sb.Ended = append(sb.Ended, f)
		}
		seq++
		sb.Seq = seq
		sb.Stats = tr.stats
		if _, err := db.ApplyBatch(ctx, c, sb); err != nil {
			db.Close()
			tb.Fatal(err)
		}
	}
	// Close refreshes the planner's statistics (PRAGMA optimize), as the
	// API server's background retention does, and checkpoints the WAL.
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("wrote %s (%d flows) in %v", path, rows, time.Since(start).Round(time.Millisecond))
	return path
}
