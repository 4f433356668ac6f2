//go:build linux

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/lightshark-dev/lightshark-mini/pkg/communityid"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// The dashboard's browser tests: Debian's Chromium, driven over the
// DevTools protocol, against real API servers in the harness's network
// namespaces, following the DOM contract of notes/dashboard-contract.md.
// Two servers share one browser, each in its own tab:
//
//   - Import: the API server with a token file, fed a known capture by the
//     capturer's offline mode (--read … --socket); the token prompt, then
//     the history (range all, filters, chart total, NDJSON link) against
//     tshark's answers in shared/pcaps/oracle.
//   - Live: the API server and the live capturer in the server namespace,
//     with real traffic from the client namespace and tcpdump beside the
//     capturer; the connections table against tshark's reading of
//     tcpdump's file, the live chart and tiles, pagination over more than
//     50 flows, then the degraded and down states.
//
// Every step fails on a JavaScript exception, a console.error/warn call or
// a browser log error or warning (failed load, CSP violation) that the
// step does not expect. Screenshots of each view, desktop and phone, dark
// and light, go to $LIGHTSHARK_ARTIFACTS or bin/test-artifacts/dashboard.

// dashCapture is the imported capture: 34 TCP and UDP conversations over
// IPv4 and IPv6 in 6 s (TCP established and mid-stream, UDP answered and
// not), none of them a documented difference from tshark (fragments,
// tunnels), plus ARP and STP frames that are in no flow.
const dashCapture = "zeek-wikipedia.pcap"

// dashPageSize is the flows table's page (contract: limit=50).
const dashPageSize = 50

func TestDashboard(t *testing.T) {
	setup(t)
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not found (make test installs it)")
	}
	shared := testenv.SharedDir(t)
	t.Parallel()
	b := startBrowser(t)
	t.Run("Import", func(t *testing.T) {
		t.Parallel()
		dashboardImport(t, b, shared)
	})
	t.Run("Live", func(t *testing.T) {
		t.Parallel()
		dashboardLive(t, b)
	})
}

// step runs one step of a tab's scenario as a subtest, then checks the
// console; a failed step ends the scenario (the next ones build on it).
func step(t *testing.T, tb *tab, name string, f func(t *testing.T)) {
	t.Helper()
	ok := t.Run(name, func(t *testing.T) {
		f(t)
		tb.console.check(t)
	})
	if !ok {
		tb.console.check(t)
		t.FailNow()
	}
}

func dashboardImport(t *testing.T, b *browser, shared string) {
	tp := newTopo(t)
	token := randomToken(t)
	tokenFile := filepath.Join(tp.dir, "api-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// History from 2011: no retention by age.
	p := startSplit(t, tp, splitOptions{noStart: true,
		apiArgs: []string{"--api-token-file", tokenFile, "--data-retention", "0"}})
	pcap := filepath.Join(tp.dir, dashCapture)
	if err := copyFile(filepath.Join(shared, "pcaps", "conformance", dashCapture), pcap, 0o644); err != nil {
		t.Fatal(err)
	}
	// tshark's tables have no timeouts: neither has this import.
	imp := startProc(t, tp.server, "lightshark-capturer --read", asCapturer, capturerBin, "--read", pcap,
		"--socket", p.sock, "--connection-timeout", "86400", "--closed-timeout", "86400")
	if code, err := imp.wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("import of %s: exit %d, %v\n%s", dashCapture, code, err, imp.out.String())
	}
	o, want := importOracle(t, shared, dashCapture)
	var ipBytes uint64
	for _, c := range want {
		ipBytes += c.bytes()
	}
	base := nsProxy(t, tp.server, apiAddr)
	tb := b.newTab(t, "import", base)

	step(t, tb, "TokenPrompt", func(t *testing.T) {
		tb.navigate(t, "/")
		tb.waitJS(t, 10*time.Second, "the token dialog to open", `document.querySelector('dialog#token-dialog').open`)
		tb.waitJS(t, 5*time.Second, "#conn-status data-state=auth", `document.querySelector('#conn-status').dataset.state === 'auth'`)
		tb.checkTilesEmpty(t)
		tb.screenshots(t, "token-prompt")
	})
	step(t, tb, "WrongToken", func(t *testing.T) {
		stop := tb.console.allow("the 401 of the wrong token", networkErrorsTo(base, "401"))
		defer stop()
		tb.typeInto(t, "#token-input", "wrong-"+token)
		tb.click(t, "#token-submit")
		tb.waitJS(t, 10*time.Second, "#token-error to say the token was refused",
			`(e => e.checkVisibility() && e.textContent.trim() !== '')(document.querySelector('#token-error'))`)
		if !eval[bool](t, tb, `document.querySelector('dialog#token-dialog').open`) {
			t.Errorf("the token dialog closed after a wrong token")
		}
		if v := eval[*string](t, tb, `sessionStorage.getItem('lightshark-token')`); v != nil && *v != "" {
			t.Errorf("sessionStorage lightshark-token = %q after a refused token, want none", *v)
		}
	})
	// The tiles hold the capture's totals: every frame tshark counted,
	// ARP and STP included (the capture statistics count them).
	tilesLoaded := fmt.Sprintf(`document.querySelector('#tile-total-packets').getAttribute('data-value') === '%d' &&
		document.querySelector('#tile-total-bytes').getAttribute('data-value') === '%d'`, o.Packets, o.TotalBytes)
	step(t, tb, "RightToken", func(t *testing.T) {
		tb.clear(t, "#token-input")
		tb.typeInto(t, "#token-input", token)
		tb.click(t, "#token-submit")
		tb.waitJS(t, 10*time.Second, "the token dialog to close", `!document.querySelector('dialog#token-dialog').open`)
		tb.waitJS(t, 10*time.Second, fmt.Sprintf("the tiles to show tshark's %d packets and %d bytes", o.Packets, o.TotalBytes), tilesLoaded)
		if v := eval[*string](t, tb, `sessionStorage.getItem('lightshark-token')`); v == nil || *v != token {
			t.Errorf("sessionStorage lightshark-token = %v, want the token", v)
		}
		// The import's capturer has gone, having read the whole file: ok,
		// and the pill says the import finished.
		tb.waitJS(t, 10*time.Second, "#conn-status to say the import finished",
			`document.querySelector('#conn-status').textContent.includes('import finished')`)
		h := p.health(t)
		if h.Status != "ok" || len(h.Capturers) != 1 || !h.Capturers[0].Finished {
			t.Errorf("/api/health after the import: %q %q, capturers %+v; want ok, one finished", h.Status, h.Reasons, h.Capturers)
		}
		tb.checkStatus(t, h)
	})
	step(t, tb, "ReloadKeepsToken", func(t *testing.T) {
		tb.do(t, 20*time.Second, "reload", chromedp.Reload())
		tb.waitJS(t, 10*time.Second, "the tiles after a reload", tilesLoaded)
		if eval[bool](t, tb, `document.querySelector('dialog#token-dialog').open`) {
			t.Errorf("the token dialog opened again after a reload (the token is in sessionStorage)")
		}
		// The stream takes the token too (access_token): stats arrive.
		tb.waitJS(t, 10*time.Second, "the live chart to plot stats messages from the stream",
			`Number(document.querySelector('#live-chart').getAttribute('data-points')) >= 2`)
		tb.noErrorBanner(t)
	})
	step(t, tb, "HistoryAll", func(t *testing.T) {
		tb.checkOptions(t)
		tb.applyHistory(t, historyQuery{Range: "all"})
		tb.waitRows(t, "#flows-table", want, rowCheck{history: true, exact: true})
		tb.checkPager(t, 1, false, false)
		// The chart: by proto, from the flows (no aggregation window),
		// the sum of its series = tshark's bytes over its TCP and UDP
		// conversations (= its IPv4 and IPv6 ones: every IP frame of the
		// capture; the ARP and STP frames are in no flow).
		tb.waitChart(t, ipBytes, keysByBytes(want, func(c *conv) string { return c.Proto }), "flows")
		tb.noErrorBanner(t)
		t.Logf("#flows-table: the %d flows of %s equal tshark's conversations; #history-chart data-total %d = tshark's total_bytes %d less its non-IP frames",
			len(want), dashCapture, ipBytes, o.TotalBytes)
		tb.screenshots(t, "history")
	})
	step(t, tb, "FlowDetails", func(t *testing.T) {
		// One conversation of each TCP state and one UDP: the first by
		// keyboard (Tab to its row, Enter), the others by a click.
		var picks []*conv
		seen := map[string]bool{}
		for _, c := range want {
			if k := c.Proto + " " + c.State; !seen[k] && (c.Proto == "tcp" || !seen["udp"]) {
				seen[k], seen[c.Proto] = true, true
				picks = append(picks, c)
			}
		}
		if len(picks) < 3 {
			t.Fatalf("%d conversations picked from %v: not a test of the details", len(picks), want)
		}
		for i, c := range picks {
			tb.checkDetails(t, "#flows-table", c, i == 0)
		}
		tb.openDetails(t, "#flows-table", picks[0], false)
		eval[bool](t, tb, `(scrollTo(0, 0), true)`) // the dialog is centred in the viewport the full-page shot starts from
		tb.screenshots(t, "flow-details")
		tb.click(t, "#flow-close")
		tb.waitJS(t, 5*time.Second, "the flow dialog to close", `!document.querySelector('dialog#flow-dialog').open`)
	})
	step(t, tb, "HistoryFilters", func(t *testing.T) {
		cases := []struct {
			q    historyQuery
			keep func(*conv) bool
		}{
			{historyQuery{Range: "all", Port: "80"}, func(c *conv) bool { return c.A.Port() == 80 || c.B.Port() == 80 }},
			{historyQuery{Range: "all", Proto: "udp"}, func(c *conv) bool { return c.Proto == "udp" }},
			{historyQuery{Range: "all", State: "S0"}, func(c *conv) bool { return c.State == "S0" }},
			{historyQuery{Range: "all", Proto: "tcp", State: "S1"}, func(c *conv) bool { return c.Proto == "tcp" && c.State == "S1" }},
		}
		for _, c := range want {
			if c.State == "" {
				t.Fatalf("no state derived from tshark's flags for %v: the state filter cannot be checked", c)
			}
		}
		for _, tc := range cases {
			sub := filterConvs(want, tc.keep)
			if len(sub) == 0 || len(sub) == len(want) {
				t.Fatalf("filter %+v keeps %d of %d conversations: not a test of it", tc.q, len(sub), len(want))
			}
			tb.applyHistory(t, tc.q)
			tb.waitRows(t, "#flows-table", sub, rowCheck{history: true, exact: true, label: fmt.Sprintf("%+v", tc.q)})
		}
	})
	step(t, tb, "CustomRange", func(t *testing.T) {
		first, last := want[0].First, want[0].Last
		for _, c := range want {
			first, last = minTime(first, c.First), maxTime(last, c.Last)
		}
		// datetime-local holds local time to the minute: a minute
		// before the first packet to a minute after the last holds
		// every flow; ten to five minutes before, none.
		tb.setLocalTime(t, "#range-from", first.Add(-time.Minute))
		tb.setLocalTime(t, "#range-to", last.Add(time.Minute))
		tb.applyHistory(t, historyQuery{Range: "custom"})
		tb.waitRows(t, "#flows-table", want, rowCheck{history: true, exact: true, label: "custom range around the capture"})
		tb.waitChart(t, ipBytes, keysByBytes(want, func(c *conv) string { return c.Proto }), "flows")
		tb.setLocalTime(t, "#range-from", first.Add(-10*time.Minute))
		tb.setLocalTime(t, "#range-to", first.Add(-5*time.Minute))
		tb.applyHistory(t, historyQuery{Range: "custom"})
		tb.waitJS(t, 10*time.Second, "no rows and a chart total of 0 for a custom range before the capture",
			`document.querySelectorAll('#flows-table tbody tr[data-flow-id]').length === 0 &&
			['0', ''].includes(document.querySelector('#history-chart').getAttribute('data-total'))`)
	})
	step(t, tb, "BadFilter", func(t *testing.T) {
		// The API answers 400 naming the parameter; the banner says so.
		stop := tb.console.allow("the 400 of port 70000", networkErrorsTo(base, "400"))
		defer stop()
		tb.applyHistory(t, historyQuery{Range: "all", Port: "70000"})
		tb.waitJS(t, 10*time.Second, "#error-banner to name the port",
			`(e => e.checkVisibility() && /port/i.test(e.textContent))(document.querySelector('#error-banner'))`)
	})
	step(t, tb, "NDJSONLink", func(t *testing.T) {
		tb.applyHistory(t, historyQuery{Range: "all"})
		tb.waitRows(t, "#flows-table", want, rowCheck{history: true, exact: true})
		tb.checkNDJSON(t, token, want)
		// The bad filter's banner goes once both of the good query's
		// answers came: the rows' and the chart's, which may come later.
		tb.waitJS(t, 10*time.Second, "the bad filter's banner to go with a good query",
			`!document.querySelector('#error-banner').checkVisibility()`)
		// With a token, a click on the link fetches with the header and
		// saves a Blob (the link itself would get a 401).
		eval[bool](t, tb, `(() => { window.e2eBlobs = []; const create = URL.createObjectURL.bind(URL);
			URL.createObjectURL = (b) => { window.e2eBlobs.push(b); return create(b); }; return true; })()`)
		tb.click(t, "a#download-ndjson")
		tb.waitJS(t, 10*time.Second, "the download's Blob", `window.e2eBlobs.length === 1`)
		text := eval[string](t, tb, `window.e2eBlobs[0].text()`)
		if probs := checkShown(fromFlows(readJSONL(t, strings.NewReader(text), "the downloaded Blob")), want, rowCheck{history: true, exact: true}); len(probs) > 0 {
			t.Errorf("the downloaded Blob against tshark:\n%s", strings.Join(probs, "\n"))
		}
		if loc := eval[string](t, tb, `location.href`); loc != base+"/" {
			t.Errorf("the download left the dashboard for %s", loc)
		}
	})
	step(t, tb, "GroupByPeer", func(t *testing.T) {
		tb.applyHistory(t, historyQuery{Range: "all", GroupBy: "peer"})
		tb.waitJS(t, 10*time.Second, "the chart grouped by peer",
			fmt.Sprintf(`(c => c.getAttribute('data-total') === '%d' && !/(^|,)(tcp|udp)(,|$)/.test(c.getAttribute('data-keys')))(document.querySelector('#history-chart'))`, ipBytes))
		keys := eval[string](t, tb, `document.querySelector('#history-chart').getAttribute('data-keys')`)
		if n := len(strings.Split(keys, ",")); n > 9 {
			t.Errorf("data-keys has %d keys (%s), want at most 8 and \"other\"", n, keys)
		}
	})
	step(t, tb, "RefusedStoredToken", func(t *testing.T) {
		// A token in sessionStorage that the server refuses (rotated):
		// the first 401 opens the dialog again.
		stop := tb.console.allow("the 401s of the stale token", networkErrorsTo(base, "401"))
		defer stop()
		eval[bool](t, tb, `(sessionStorage.setItem('lightshark-token', 'stale-token'), true)`)
		tb.do(t, 20*time.Second, "reload", chromedp.Reload())
		tb.waitJS(t, 10*time.Second, "the token dialog to open on a 401", `document.querySelector('dialog#token-dialog').open`)
		tb.waitJS(t, 5*time.Second, "#conn-status data-state=auth", `document.querySelector('#conn-status').dataset.state === 'auth'`)
		tb.checkTilesEmpty(t)
	})
}

func dashboardLive(t *testing.T, b *browser) {
	tp := newTopo(t)
	tp.startHTTP(t)
	tp.startDNS(t)
	td := tp.startTcpdump(t)
	// Closed connections stay in the live view for two minutes (the
	// connections table shows active flows). With a one-second
	// aggregation window, the history chart draws on the stored windows
	// (exact), where the import's draws on the flows.
	p := startSplit(t, tp, splitOptions{capArgs: []string{"--closed-timeout", "120"},
		apiArgs: []string{"--aggregation-window", "1"}})
	base := nsProxy(t, tp.server, apiAddr)

	// The known flows, each in a different state: two HTTP GETs (IPv4,
	// IPv6: SF), a refused connection (REJ), a DNS query over UDP
	// answered (SF), a UDP datagram to a closed port (S0), and a TCP
	// connection left open after its first bytes (S1).
	c := tp.client
	run(t, 20*time.Second, c, "curl", "-sf", "-o", "/dev/null", tp.url4("/small.txt"))
	run(t, 20*time.Second, c, "curl", "-sf", "-o", "/dev/null", tp.url6("/small.txt"))
	if out, err := runErr(10*time.Second, c, "curl", "-s", "--max-time", "5", "-o", "/dev/null",
		fmt.Sprintf("http://%s:%d/", tp.B4, closedTCP)); err == nil {
		t.Fatalf("curl to the closed port succeeded: %s", out)
	}
	run(t, 20*time.Second, c, "dig", "+tries=1", "+time=2", "@"+tp.B4.String(), "www.example.test", "A")
	run(t, 20*time.Second, c, "python3", "-c", `import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x" * 100, (sys.argv[1], 9999))`, tp.B4.String())
	idle := startProc(t, c, "idle TCP connection", nil, "python3", "-c", `import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET /small.txt HTTP/1.1\r\n")
print("sent", flush=True)
time.sleep(600)`, tp.B4.String(), strconv.Itoa(httpPort))
	waitFor(t, 10*time.Second, "the idle connection", func() bool { return strings.Contains(idle.out.String(), "sent") })
	time.Sleep(500 * time.Millisecond) // the last ACKs and FINs reach both captures
	td.stop(t)
	var known []*conv
	for _, cv := range tsharkConvs(t, td.file) {
		if tp.ours(cv.Proto, cv.A.Addr().String(), cv.B.Addr().String(), cv.A.Port()) {
			known = append(known, cv)
		}
	}
	states := map[string]int{}
	for _, cv := range known {
		states[cv.Proto+" "+cv.State]++
	}
	if want := map[string]int{"tcp SF": 2, "tcp REJ": 1, "tcp S1": 1, "udp SF": 1, "udp S0": 1}; !maps.Equal(states, want) {
		t.Fatalf("tshark saw %v in tcpdump's file, want %v:\n%v", states, want, known)
	}
	tb := b.newTab(t, "live", base)

	step(t, tb, "Connections", func(t *testing.T) {
		tb.navigate(t, "/")
		tb.waitJS(t, 10*time.Second, "#conn-status data-state=ok", `document.querySelector('#conn-status').dataset.state === 'ok'`)
		tb.waitRows(t, "#conn-table", known, rowCheck{direction: record.DirInbound})
		tb.noErrorBanner(t)
		for _, col := range []string{"bytes", "packets"} {
			tb.checkSort(t, col)
		}
		// The open connection's details (the live record, or the store's
		// once the capturer has sent it).
		for _, cv := range known {
			if cv.State == "S1" {
				tb.checkDetails(t, "#conn-table", cv, false)
			}
		}
		tb.click(t, "#flow-close")
		tb.waitJS(t, 5*time.Second, "the flow dialog to close", `!document.querySelector('dialog#flow-dialog').open`)
		tb.screenshots(t, "connections")
	})
	step(t, tb, "LiveChart", func(t *testing.T) {
		points := tb.num(t, "#live-chart", "data-points")
		packets := tb.num(t, "#tile-total-packets", "data-value")
		ping := startProc(t, c, "ping stream", nil, "ping", "-i", "0.2", "-s", "500", tp.B4.String())
		defer ping.kill9(t)
		tb.waitJS(t, 10*time.Second, "the live chart to plot 3 more stats messages",
			fmt.Sprintf(`Number(document.querySelector('#live-chart').getAttribute('data-points')) >= %v`, points+3))
		tb.waitJS(t, 10*time.Second, "the tiles to count the ping stream",
			fmt.Sprintf(`Number(document.querySelector('#tile-total-packets').getAttribute('data-value')) > %v`, packets))
		// Echo requests come in, replies go out: every rate is above 0.
		tb.waitJS(t, 10*time.Second, "the rate tiles (pps, bps, in, out) above 0",
			`['#tile-pps', '#tile-bps', '#tile-bps-in', '#tile-bps-out'].every(s => Number(document.querySelector(s).getAttribute('data-value')) > 0)`)
		// In and out are parts of the total (internal and unknown flows
		// count in neither), all from one stats message.
		if r := eval[[]float64](t, tb, `['#tile-bps', '#tile-bps-in', '#tile-bps-out'].map(s => Number(document.querySelector(s).getAttribute('data-value')))`); r[1]+r[2] > r[0]*1.000001+0.5 {
			t.Errorf("#tile-bps-in %v + #tile-bps-out %v > #tile-bps %v", r[1], r[2], r[0])
		}
		for _, s := range []string{"#tile-drops", "#tile-evictions"} {
			if v := tb.num(t, s, "data-value"); v != 0 {
				t.Errorf("%s data-value = %v, want 0", s, v)
			}
		}
		if v := tb.num(t, "#tile-active", "data-value"); v < float64(len(known)) {
			t.Errorf("#tile-active data-value = %v, want at least the %d known flows", v, len(known))
		}
		tb.screenshots(t, "live")
	})
	step(t, tb, "Pagination", func(t *testing.T) {
		// More than a page of flows: 60 HTTP connections, tcpdump beside.
		td := tp.startTcpdump(t)
		run(t, 60*time.Second, c, "python3", "-c", `import sys, urllib.request
for _ in range(60):
    urllib.request.urlopen(sys.argv[1], timeout=5).read()`, tp.url4("/small.txt"))
		time.Sleep(500 * time.Millisecond)
		td.stop(t)
		var want []*conv
		for _, cv := range append(known, tsharkConvs(t, td.file)...) {
			if cv.Proto == "tcp" && (cv.A.Port() == httpPort || cv.B.Port() == httpPort) && tp.ours(cv.Proto, cv.A.Addr().String(), cv.B.Addr().String(), 0) {
				want = append(want, cv)
			}
		}
		if len(want) <= dashPageSize || len(want) > 2*dashPageSize {
			t.Fatalf("%d HTTP conversations in tshark's reading, want 51-100", len(want))
		}
		// The API server has them all before the page asks (a gate,
		// not an expectation: the expectation is tshark's).
		waitFor(t, 15*time.Second, "the API server to store the HTTP flows", func() bool {
			return len(p.flowsQuery(t, "", fmt.Sprintf("port=%d", httpPort))) >= len(want)
		})
		q := historyQuery{Range: "all", Port: strconv.Itoa(httpPort)}
		tb.applyHistory(t, q)
		// The table of the previous query may also be a page 1 of 50
		// rows: wait for the rows of this one (HTTP only) and the pager
		// it sets once its answer is in.
		tb.waitPage(t, 1, dashPageSize, false, true)
		page1 := tb.rows(t, "#flows-table")
		tb.click(t, "#flows-next")
		tb.waitPage(t, 2, len(want)-dashPageSize, true, false)
		page2 := tb.rows(t, "#flows-table")
		ids1, ids2 := rowIDs(page1), rowIDs(page2)
		for id := range ids2 {
			if ids1[id] {
				t.Errorf("flow %s is on page 1 and page 2", id)
			}
		}
		// Both pages together: tshark's HTTP conversations, numbers and all.
		if probs := checkShown(fromRows(append(slices.Clone(page1), page2...)), want, rowCheck{history: true, exact: true, direction: record.DirInbound}); len(probs) > 0 {
			t.Errorf("pages 1 and 2 against tshark:\n%s", strings.Join(probs, "\n"))
		}
		tb.checkNDJSON(t, "", want)
		// The chart of the same query, from the windows: tshark's bytes.
		var total uint64
		for _, cv := range want {
			total += cv.bytes()
		}
		tb.waitChart(t, total, []string{"tcp"}, "windows")
		tb.click(t, "#flows-prev")
		tb.waitPage(t, 1, dashPageSize, false, true)
		if again := rowIDs(tb.rows(t, "#flows-table")); !maps.Equal(again, ids1) {
			t.Errorf("page 1 after prev holds other flows than before next")
		}
	})
	step(t, tb, "Degraded", func(t *testing.T) {
		p.cap.stop(t, 10*time.Second)
		tb.waitJS(t, 15*time.Second, "#conn-status data-state=degraded", `document.querySelector('#conn-status').dataset.state === 'degraded'`)
		h := p.health(t)
		if !slices.Contains(h.Reasons, "no capturer connected") {
			t.Errorf("/api/health reasons %q, want \"no capturer connected\"", h.Reasons)
		}
		tb.checkStatus(t, h)
		tb.screenshots(t, "degraded")
	})
	step(t, tb, "Down", func(t *testing.T) {
		// Requests to the stopped server fail, as expected, until the
		// tab closes.
		tb.console.allow("requests to the stopped API server", networkErrorsTo(base, ""))
		p.stopAPI(t)
		tb.waitJS(t, 15*time.Second, "#conn-status data-state=down", `document.querySelector('#conn-status').dataset.state === 'down'`)
		tb.waitJS(t, 10*time.Second, "#error-banner to say what failed",
			`(e => e.checkVisibility() && e.textContent.trim() !== '')(document.querySelector('#error-banner'))`)
		tb.screenshots(t, "down")
	})
}

// historyQuery is what the history form is set to before apply.
type historyQuery struct {
	Range, GroupBy         string
	IP, Port, Proto, State string
}

// applyHistory sets the history form (every field, so that no filter of a
// previous query stays) and clicks apply.
func (tb *tab) applyHistory(t *testing.T, q historyQuery) {
	t.Helper()
	if q.GroupBy == "" {
		q.GroupBy = "proto"
	}
	tb.setField(t, "select#range", q.Range)
	tb.setField(t, "select#group-by", q.GroupBy)
	tb.setField(t, "input#f-ip", q.IP)
	tb.setField(t, "input#f-port", q.Port)
	tb.setField(t, "select#f-proto", q.Proto)
	tb.setField(t, "select#f-state", q.State)
	tb.click(t, "button#history-apply")
}

// setField sets an input's or a select's value as a user would (input and
// change events); a select must offer the value.
func (tb *tab) setField(t *testing.T, sel, value string) {
	t.Helper()
	res := eval[string](t, tb, fmt.Sprintf(`(() => {
		const e = document.querySelector(%q);
		if (!e) return 'no element';
		if (e.tagName === 'SELECT' && ![...e.options].some(o => o.value === %q)) return 'no option ' + JSON.stringify(%q) + ' among ' + JSON.stringify([...e.options].map(o => o.value));
		e.value = %q;
		e.dispatchEvent(new Event('input', {bubbles: true}));
		e.dispatchEvent(new Event('change', {bubbles: true}));
		return '';
	})()`, sel, value, value, value))
	if res != "" {
		tb.fail(t, "set %s to %q: %s", sel, value, res)
	}
}

// click clicks an element (a DOM click, which works whatever the layout).
func (tb *tab) click(t *testing.T, sel string) {
	t.Helper()
	res := eval[string](t, tb, fmt.Sprintf(`(e => { if (!e) return 'no element'; if (e.disabled) return 'disabled'; e.click(); return ''; })(document.querySelector(%q))`, sel))
	if res != "" {
		tb.fail(t, "click %s: %s", sel, res)
	}
}

// typeInto types text into an element with key events.
func (tb *tab) typeInto(t *testing.T, sel, text string) {
	t.Helper()
	tb.do(t, 10*time.Second, "type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

func (tb *tab) clear(t *testing.T, sel string) {
	t.Helper()
	tb.setField(t, sel, "")
}

// num returns a numeric attribute (failing when absent or not a number).
func (tb *tab) num(t *testing.T, sel, attr string) float64 {
	t.Helper()
	s := eval[*string](t, tb, fmt.Sprintf(`(e => e ? e.getAttribute(%q) : null)(document.querySelector(%q))`, attr, sel))
	if s == nil {
		tb.fail(t, "%s has no %s", sel, attr)
	}
	v, err := strconv.ParseFloat(*s, 64)
	if err != nil {
		tb.fail(t, "%s %s = %q: not a number", sel, attr, *s)
	}
	return v
}

// checkOptions requires the history form's selects to offer the
// contract's options.
func (tb *tab) checkOptions(t *testing.T) {
	t.Helper()
	for sel, want := range map[string][]string{
		"select#range":    {"5m", "1h", "24h", "all", "custom"},
		"select#group-by": {"proto", "peer", "direction"},
		"select#f-proto":  {"", "tcp", "udp", "icmp", "icmpv6", "sctp"},
		"select#f-state":  {"", "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"},
	} {
		got := eval[[]string](t, tb, fmt.Sprintf(`[...document.querySelector(%q).options].map(o => o.value)`, sel))
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s offers %q, want %q among them", sel, got, w)
			}
		}
	}
}

// setLocalTime sets a datetime-local input to at, in the browser's time
// zone, to the minute.
func (tb *tab) setLocalTime(t *testing.T, sel string, at time.Time) {
	t.Helper()
	v := eval[string](t, tb, fmt.Sprintf(`(d => { const p = (n) => String(n).padStart(2, '0');
		return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()); })(new Date(%d))`,
		at.UnixMilli()))
	tb.setField(t, sel, v)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// checkTilesEmpty requires every live tile to show "–" with an empty
// data-value (no numbers before the first data, e.g. behind the token
// prompt).
func (tb *tab) checkTilesEmpty(t *testing.T) {
	t.Helper()
	bad := eval[[]string](t, tb, `[...document.querySelectorAll('.tile')].filter(e =>
		e.getAttribute('data-value') !== '' || e.querySelector('.value').textContent.trim() !== '–')
		.map(e => '#' + e.id + ' data-value=' + JSON.stringify(e.getAttribute('data-value')) + ' text=' + JSON.stringify(e.querySelector('.value').textContent))`)
	if n := eval[int](t, tb, `document.querySelectorAll('.tile').length`); n < 9 {
		t.Errorf("%d .tile elements, want the contract's 9", n)
	}
	for _, b := range bad {
		t.Errorf("tile %s before any data, want \"–\" and data-value=\"\"", b)
	}
}

// detailRow finds the row of table that shows conversation c and returns
// its flow id and endpoints as shown (src is the flow's originator).
func (tb *tab) detailRow(t *testing.T, table string, c *conv) (id string, src, dst netip.AddrPort) {
	t.Helper()
	for _, r := range fromRows(tb.rows(t, table)) {
		s, err1 := parseEndpoint(r.Src)
		d, err2 := parseEndpoint(r.Dst)
		if err1 == nil && err2 == nil && convKey(r.Proto, s, d) == c.key() {
			return r.ID, s, d
		}
	}
	tb.fail(t, "%s has no row for %v", table, c)
	return "", src, dst
}

// openDetails opens the flow dialog of c's row: by keyboard (Tab from a
// neighbouring row, which must show a focus ring, then Enter) or by a
// click. It returns the row's flow id and endpoints.
func (tb *tab) openDetails(t *testing.T, table string, c *conv, keyboard bool) (id string, src, dst netip.AddrPort) {
	t.Helper()
	id, src, dst = tb.detailRow(t, table, c)
	row := fmt.Sprintf(`%s tbody tr[data-flow-id=%q]`, table, id)
	if keyboard {
		// Focus the row before (or after) it, then a real Tab (or
		// Shift+Tab) key: rows are in the tab order.
		back := eval[bool](t, tb, fmt.Sprintf(`(tr => { const n = tr.previousElementSibling || tr.nextElementSibling;
			if (!n) return false; n.focus(); return n === tr.nextElementSibling; })(document.querySelector(%q))`, row))
		key := chromedp.KeyEvent(kb.Tab)
		if back {
			key = chromedp.KeyEvent(kb.Tab, chromedp.KeyModifiers(chromedp.ModifierShift))
		}
		tb.do(t, 5*time.Second, "Tab to the row", key)
		got := eval[[]string](t, tb, fmt.Sprintf(`(tr => [String(document.activeElement === tr), String(tr.tabIndex),
			getComputedStyle(tr).outlineStyle, getComputedStyle(tr).outlineWidth])(document.querySelector(%q))`, row))
		if got[0] != "true" || got[1] != "0" {
			tb.fail(t, "Tab did not reach %s (focused %v, tabIndex %s)", row, got[0], got[1])
		}
		if got[2] == "none" || got[3] == "0px" {
			t.Errorf("the focused row %s has no focus ring: outline %s %s", row, got[2], got[3])
		}
		tb.do(t, 5*time.Second, "press Enter on the row", chromedp.KeyEvent(kb.Enter))
	} else {
		tb.click(t, row)
	}
	tb.waitJS(t, 10*time.Second, "the flow dialog of flow "+id,
		fmt.Sprintf(`(d => d.open && d.dataset.flowId === %q && ['ok', 'live'].includes(d.dataset.state))(document.querySelector('dialog#flow-dialog'))`, id))
	return id, src, dst
}

// checkDetails opens c's flow dialog and checks it against tshark: the
// Community ID computed from the conversation's 5-tuple (pkg/communityid,
// tested against the spec's vectors), the state, the Zeek history against
// the TCP flags each side sent, packets and bytes each way, first and last
// seen, and the JSON download.
func (tb *tab) checkDetails(t *testing.T, table string, c *conv, keyboard bool) {
	t.Helper()
	// The page's CSP keeps fetch from blob: URLs: keep the Blobs the page
	// makes, by URL, to read the download's.
	eval[bool](t, tb, `(() => { if (window.e2eFlowBlobs) return true; window.e2eFlowBlobs = {};
		const create = URL.createObjectURL.bind(URL);
		URL.createObjectURL = (b) => { const u = create(b); window.e2eFlowBlobs[u] = b; return u; }; return true; })()`)
	id, src, dst := tb.openDetails(t, table, c, keyboard)
	v := eval[map[string]string](t, tb, `Object.fromEntries([...document.querySelectorAll('#flow-dialog [id^="flow-"][data-value]')]
		.map(e => [e.id.slice(5), e.getAttribute('data-value')]))`)
	text := eval[map[string]string](t, tb, `Object.fromEntries([...document.querySelectorAll('#flow-dialog [id^="flow-"][data-value]')]
		.map(e => [e.id.slice(5), e.textContent.trim()]))`)
	name := fmt.Sprintf("%s flow %s %s %s -> %s", table, id, c.Proto, src, dst)
	proto := map[string]uint8{"tcp": 6, "udp": 17}[c.Proto]
	if want := communityid.Sum(0, proto, c.A.Addr(), c.B.Addr(), c.A.Port(), c.B.Port()); v["community-id"] != want || text["community-id"] != want {
		t.Errorf("%s: community_id %q (text %q), want %q (pkg/communityid from tshark's 5-tuple)", name, v["community-id"], text["community-id"], want)
	}
	if c.State != "" && v["state"] != c.State {
		t.Errorf("%s: state %q, want %q (from tshark's TCP flags)", name, v["state"], c.State)
	}
	if w := stateWords[c.State]; w != "" && (!strings.Contains(text["state"], w) || !strings.Contains(text["state"], c.State)) {
		t.Errorf("%s: state text %q, want the words %q and the code %s", name, text["state"], w, c.State)
	}
	if c.Proto == "tcp" {
		// Zeek's history: upper case from the originator (the source).
		h := v["history"]
		for _, side := range []struct {
			ep    netip.AddrPort
			upper bool
		}{{src, true}, {dst, false}} {
			syn, synAck, fin, rst := c.flagsFrom(side.ep)
			for _, l := range []struct {
				letter byte
				sent   bool
			}{{'S', syn}, {'H', synAck}, {'F', fin}, {'R', rst}} {
				ch, both := l.letter, byte('I') // FIN+RST in one segment is I
				if !side.upper {
					ch, both = ch+'a'-'A', 'i'
				}
				has := strings.IndexByte(h, ch) >= 0
				if has != l.sent && !(l.sent && (l.letter == 'F' || l.letter == 'R') && strings.IndexByte(h, both) >= 0) {
					t.Errorf("%s: history %q has %q: %v, want %v (tshark: %s sent %c)", name, h, ch, has, l.sent, side.ep, l.letter)
				}
			}
		}
		if v["tcp-flags"] == "" {
			t.Errorf("%s: no tcp_flags", name)
		}
	}
	sentF, sentB, recvF, recvB := c.from(src)
	for k, want := range map[string]uint64{"packets-sent": sentF, "bytes-sent": sentB, "packets-received": recvF, "bytes-received": recvB} {
		if v[k] != strconv.FormatUint(want, 10) {
			t.Errorf("%s: %s %q, want %d (tshark)", name, k, v[k], want)
		}
	}
	for k, want := range map[string]time.Time{"first-seen": c.First, "last-seen": c.Last} {
		ms, err := strconv.ParseFloat(v[k], 64)
		if err != nil || math.Abs(ms-float64(want.UnixNano())/1e6) > 1 {
			t.Errorf("%s: %s %q, want %v (tshark)", name, k, v[k], want.UnixMilli())
		}
		// The full local time (the browser runs in UTC): year, time of day and zone.
		if s := text[k]; !strings.Contains(s, want.UTC().Format("2006")) || !strings.Contains(s, want.UTC().Format("05")) || !strings.Contains(s, "UTC") {
			t.Errorf("%s: %s text %q, want the full date and time of %v", name, k, s, want.UTC())
		}
	}
	// The download is the flow's JSON record.
	dl := eval[[]string](t, tb, `(a => [a.href, a.getAttribute('download') || ''])(document.querySelector('#flow-download'))`)
	if !strings.HasPrefix(dl[0], "blob:") || dl[1] != "flow-"+id+".json" {
		t.Errorf("%s: #flow-download href %q download %q, want a blob: URL and flow-%s.json", name, dl[0], dl[1], id)
	} else {
		var f record.Flow
		body := eval[string](t, tb, fmt.Sprintf(`window.e2eFlowBlobs[%q].text()`, dl[0]))
		if err := json.Unmarshal([]byte(body), &f); err != nil || f.ID != id || f.CommunityID != v["community-id"] {
			t.Errorf("%s: the downloaded JSON (id %q, community_id %q, %v), want the flow's record", name, f.ID, f.CommunityID, err)
		}
	}
	tb.click(t, "#flow-copy")
	tb.waitJS(t, 5*time.Second, "the copy button to say what it did", `['Copied', 'Selected'].includes(document.querySelector('#flow-copy').textContent)`)
}

// checkStatus requires #conn-status to show the health's status and every
// reason it gives.
func (tb *tab) checkStatus(t *testing.T, h health) {
	t.Helper()
	state := eval[string](t, tb, `document.querySelector('#conn-status').dataset.state || ''`)
	text := eval[string](t, tb, `document.querySelector('#conn-status').textContent`)
	if state != h.Status {
		t.Errorf("#conn-status data-state = %q, want %q (/api/health)", state, h.Status)
	}
	for _, r := range h.Reasons {
		if !strings.Contains(text, r) {
			t.Errorf("#conn-status text %q lacks the reason %q (/api/health)", strings.TrimSpace(text), r)
		}
	}
}

func (tb *tab) noErrorBanner(t *testing.T) {
	t.Helper()
	if eval[bool](t, tb, `(e => e && e.checkVisibility())(document.querySelector('#error-banner'))`) {
		t.Errorf("#error-banner is shown: %q", eval[string](t, tb, `document.querySelector('#error-text').textContent.trim()`))
	}
}

// checkPager requires #flows-page to be page and the buttons' states.
func (tb *tab) checkPager(t *testing.T, page int, prev, next bool) {
	t.Helper()
	got := eval[[]string](t, tb, `[document.querySelector('#flows-page').getAttribute('data-value'),
		String(!document.querySelector('#flows-prev').disabled), String(!document.querySelector('#flows-next').disabled)]`)
	want := []string{strconv.Itoa(page), strconv.FormatBool(prev), strconv.FormatBool(next)}
	if !slices.Equal(got, want) {
		t.Errorf("pager (page, prev enabled, next enabled) = %v, want %v", got, want)
	}
}

// waitPage waits for the flows table to show page with n rows, all of
// them HTTP flows (port httpPort), and the prev and next buttons enabled
// or not.
func (tb *tab) waitPage(t *testing.T, page, n int, prev, next bool) {
	t.Helper()
	tb.waitJS(t, 10*time.Second, fmt.Sprintf("page %d with %d HTTP rows, prev enabled %v, next enabled %v", page, n, prev, next),
		fmt.Sprintf(`(() => {
			const rows = [...document.querySelectorAll('#flows-table tbody tr[data-flow-id]')];
			return document.querySelector('#flows-page').getAttribute('data-value') === '%d' && rows.length === %d &&
				rows.every(tr => tr.querySelector('td[data-col=port]').getAttribute('data-value') === '%d') &&
				document.querySelector('#flows-prev').disabled === %v && document.querySelector('#flows-next').disabled === %v;
		})()`, page, n, httpPort, !prev, !next))
}

// waitChart waits for the history chart to show total bytes in series
// keys (in that order) from source.
func (tb *tab) waitChart(t *testing.T, total uint64, keys []string, source string) {
	t.Helper()
	tb.waitJS(t, 10*time.Second, fmt.Sprintf("#history-chart data-total=%d data-keys=%s data-source=%s (tshark)", total, strings.Join(keys, ","), source),
		fmt.Sprintf(`(c => c.getAttribute('data-total') === '%d' && c.getAttribute('data-keys') === %q && c.getAttribute('data-source') === %q)(document.querySelector('#history-chart'))`,
			total, strings.Join(keys, ","), source))
}

// checkSort clicks th[data-sort=col] twice: the rows must be ordered by
// col (bytes: both directions), one way then the other.
func (tb *tab) checkSort(t *testing.T, col string) {
	t.Helper()
	order := fmt.Sprintf(`(() => {
		const v = [...document.querySelectorAll('#conn-table tbody tr[data-flow-id]')].map(tr => {
			const n = (c) => Number(tr.querySelector('td[data-col=' + c + ']').getAttribute('data-value'));
			return %q === 'bytes' ? n('bytes_sent') + n('bytes_received') : n('packets');
		});
		if (v.length < 2 || v.every(x => x === v[0])) return 'flat';
		if (v.every((x, i) => i === 0 || v[i-1] >= x)) return 'desc';
		if (v.every((x, i) => i === 0 || v[i-1] <= x)) return 'asc';
		return 'unsorted';
	})()`, col)
	th := fmt.Sprintf(`#conn-table th[data-sort=%s]`, col)
	tb.click(t, th)
	tb.waitJS(t, 5*time.Second, "rows sorted by "+col, order+` === 'asc' || `+order+` === 'desc'`)
	first := eval[string](t, tb, order)
	other := map[string]string{"asc": "desc", "desc": "asc"}[first]
	tb.click(t, th)
	tb.waitJS(t, 5*time.Second, fmt.Sprintf("rows sorted by %s %s after a second click", col, other), fmt.Sprintf(`%s === %q`, order, other))
}

// checkNDJSON fetches a#download-ndjson's href (with the token, as the
// dashboard does) and requires the flows of tshark's conversations.
func (tb *tab) checkNDJSON(t *testing.T, token string, want []*conv) {
	t.Helper()
	href := eval[string](t, tb, `document.querySelector('a#download-ndjson').href`)
	u, err := url.Parse(href)
	if err != nil || !strings.HasPrefix(href, tb.base+"/api/flows?") || u.Query().Get("format") != "ndjson" {
		t.Fatalf("a#download-ndjson href = %q, want %s/api/flows?…format=ndjson", href, tb.base)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", href, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", href, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", href, resp.Status, b)
	}
	flows := readJSONL(t, resp.Body, href)
	if probs := checkShown(fromFlows(flows), want, rowCheck{history: true, exact: true}); len(probs) > 0 {
		t.Errorf("the NDJSON link (%s) against tshark:\n%s", href, strings.Join(probs, "\n"))
	}
}

// domRow is one tr[data-flow-id] of a flows table: each td[data-col]'s
// data-value (nil when absent) and text.
type domRow struct {
	ID    string             `json:"id"`
	Value map[string]*string `json:"value"`
	Text  map[string]string  `json:"text"`
}

// rows reads a table's flow rows.
func (tb *tab) rows(t *testing.T, table string) []domRow {
	t.Helper()
	return eval[[]domRow](t, tb, fmt.Sprintf(`[...document.querySelectorAll(%q)].map(tr => {
		const r = {id: tr.getAttribute('data-flow-id'), value: {}, text: {}};
		for (const td of tr.querySelectorAll('td[data-col]')) {
			const c = td.getAttribute('data-col');
			r.value[c] = td.hasAttribute('data-value') ? td.getAttribute('data-value') : null;
			r.text[c] = td.textContent.trim();
		}
		return r;
	})`, table+" tbody tr[data-flow-id]"))
}

// waitRows waits up to 15 s for a table's rows to show want (see
// rowCheck), then fails with every difference of the last reading.
func (tb *tab) waitRows(t *testing.T, table string, want []*conv, rc rowCheck) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		probs := checkShown(fromRows(tb.rows(t, table)), want, rc)
		if len(probs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			label := ""
			if rc.label != "" {
				label = " (" + rc.label + ")"
			}
			tb.fail(t, "%s%s against tshark after 15 s:\n%s", table, label, strings.Join(probs, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func rowIDs(rows []domRow) map[string]bool {
	m := map[string]bool{}
	for _, r := range rows {
		m[r.ID] = true
	}
	return m
}

// shownFlow is a flow as the dashboard or the API shows it, the fields of
// the contract's td[data-col] cells (values as strings, "" when absent).
type shownFlow struct {
	ID                                string
	Proto, Src, Dst, Peer, Port       string
	State, StateText, Direction       string
	BytesSent, BytesReceived, Packets string
	Duration, FirstSeen, LastSeen     string
	api                               bool // an API record: no peer, no state text
}

func fromRows(rows []domRow) []shownFlow {
	var out []shownFlow
	for _, r := range rows {
		v := func(c string) string {
			if p := r.Value[c]; p != nil {
				return *p
			}
			return ""
		}
		out = append(out, shownFlow{ID: r.ID, Proto: v("proto"), Src: v("src"), Dst: v("dst"), Peer: v("peer"), Port: v("port"),
			State: v("state"), StateText: r.Text["state"], Direction: v("direction"),
			BytesSent: v("bytes_sent"), BytesReceived: v("bytes_received"), Packets: v("packets"),
			Duration: v("duration"), FirstSeen: v("first_seen"), LastSeen: v("last_seen")})
	}
	return out
}

// fromFlows is fromRows for API flow records (the NDJSON export), so that
// the same checks apply.
func fromFlows(flows []record.Flow) []shownFlow {
	var out []shownFlow
	for _, f := range flows {
		u := strconv.FormatUint
		ep := func(ip string, port uint16) string {
			return netip.AddrPortFrom(netip.MustParseAddr(ip), port).String()
		}
		out = append(out, shownFlow{ID: f.ID, Proto: f.Proto, Src: ep(f.SrcIP, f.SrcPort), Dst: ep(f.DstIP, f.DstPort),
			Port: u(uint64(f.DstPort), 10), State: f.State, Direction: f.Direction,
			BytesSent: u(f.BytesSent, 10), BytesReceived: u(f.BytesReceived, 10), Packets: u(f.PacketsSent+f.PacketsReceived, 10),
			Duration:  strconv.FormatFloat(f.LastSeen.Sub(f.FirstSeen.Time).Seconds(), 'f', -1, 64),
			FirstSeen: strconv.FormatFloat(float64(f.FirstSeen.UnixNano())/1e6, 'f', -1, 64),
			LastSeen:  strconv.FormatFloat(float64(f.LastSeen.UnixNano())/1e6, 'f', -1, 64), api: true})
	}
	return out
}

// rowCheck says what checkShown requires besides each conversation's
// numbers.
type rowCheck struct {
	history   bool   // first_seen and last_seen cells (the flows table)
	exact     bool   // no other flows (else flows that are not the test's are ignored)
	direction string // every flow's direction, and its peer (the client for inbound); "" for none
	label     string // for messages
}

// stateWords are the words the contract puts in the state cell's text.
var stateWords = map[string]string{"S0": "attempt", "REJ": "refused", "SF": "closed normally", "S1": "established",
	"RSTO": "reset", "RSTR": "reset"}

// checkShown compares flows with tshark's conversations, each flow with
// the conversation of its endpoints: proto, bytes each way, packets, state
// (and its words), the initiator as source, the service port, the
// duration (and with history, first and last seen, in Unix ms). Every
// conversation must be shown exactly once. It returns the differences.
func checkShown(shown []shownFlow, want []*conv, rc rowCheck) []string {
	var probs []string
	byKey := map[string]*conv{}
	for _, c := range want {
		byKey[c.key()] = c
	}
	seen := map[*conv]string{}
	for _, f := range shown {
		if f.Proto != "tcp" && f.State == "OTH" && f.StateText != "" && !strings.Contains(f.StateText, "other") {
			// OTH is midstream TCP; for ICMP it is the only state.
			probs = append(probs, fmt.Sprintf("flow %s %s: state text %q, want it to say \"other\"", f.ID, f.Proto, f.StateText))
		}
		if f.Proto != "tcp" && f.Proto != "udp" && !rc.exact {
			continue // not the test's (ICMPv6 housekeeping, the ping stream)
		}
		src, err1 := parseEndpoint(f.Src)
		dst, err2 := parseEndpoint(f.Dst)
		if err1 != nil || err2 != nil {
			probs = append(probs, fmt.Sprintf("flow %s: src %q, dst %q: not ip:port", f.ID, f.Src, f.Dst))
			continue
		}
		c := byKey[convKey(f.Proto, src, dst)]
		name := fmt.Sprintf("flow %s %s %s -> %s", f.ID, f.Proto, src, dst)
		if c == nil {
			if rc.exact {
				probs = append(probs, name+": not a conversation of tshark's")
			}
			continue
		}
		if prev, dup := seen[c]; dup {
			probs = append(probs, fmt.Sprintf("%s: shown twice (also as flow %s)", name, prev))
		}
		seen[c] = f.ID
		sentF, sentB, recvF, recvB := c.from(src)
		num := func(col, s string, want float64, tol float64) {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || math.Abs(v-want) > tol {
				probs = append(probs, fmt.Sprintf("%s: %s %q, want %v (tshark)", name, col, s, want))
			}
		}
		num("bytes_sent", f.BytesSent, float64(sentB), 0)
		num("bytes_received", f.BytesReceived, float64(recvB), 0)
		num("packets", f.Packets, float64(sentF+recvF), 0)
		num("port", f.Port, float64(dst.Port()), 0)
		num("duration", f.Duration, c.Last.Sub(c.First).Seconds(), 0.001)
		if rc.history {
			num("first_seen", f.FirstSeen, float64(c.First.UnixNano())/1e6, 1)
			num("last_seen", f.LastSeen, float64(c.Last.UnixNano())/1e6, 1)
		}
		if c.State != "" && f.State != c.State {
			probs = append(probs, fmt.Sprintf("%s: state %q, want %q (from tshark's TCP flags)", name, f.State, c.State))
		}
		if w := stateWords[c.State]; w != "" && f.StateText != "" && !strings.Contains(strings.ToLower(f.StateText), w) {
			probs = append(probs, fmt.Sprintf("%s: state text %q, want it to say %q", name, f.StateText, w))
		}
		if c.Proto == "tcp" && (c.synA || c.synB) && src != c.Orig {
			probs = append(probs, fmt.Sprintf("%s: the source is not the initiator %s (its SYN)", name, c.Orig))
		}
		if rc.direction != "" {
			if f.Direction != rc.direction {
				probs = append(probs, fmt.Sprintf("%s: direction %q, want %q", name, f.Direction, rc.direction))
			}
			peer := dst.Addr()
			if rc.direction == record.DirInbound {
				peer = src.Addr()
			}
			if !f.api {
				if a, err := netip.ParseAddr(strings.Trim(f.Peer, "[]")); err != nil || a != peer {
					probs = append(probs, fmt.Sprintf("%s: peer %q, want %s", name, f.Peer, peer))
				}
			}
		}
	}
	for _, c := range want {
		if _, ok := seen[c]; !ok {
			probs = append(probs, fmt.Sprintf("missing: %v", c))
		}
	}
	return probs
}

// parseEndpoint parses "ip:port", "[ipv6]:port" or "ipv6:port".
func parseEndpoint(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("no port in %q", s)
	}
	a, err := netip.ParseAddr(s[:i])
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

func filterConvs(cs []*conv, keep func(*conv) bool) []*conv {
	var out []*conv
	for _, c := range cs {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// keysByBytes returns the series keys the contract orders by total,
// largest first.
func keysByBytes(cs []*conv, key func(*conv) string) []string {
	totals := map[string]uint64{}
	for _, c := range cs {
		totals[key(c)] += c.bytes()
	}
	var keys []string
	for k := range totals {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if totals[a] != totals[b] {
			if totals[a] > totals[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return keys
}

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// flowsQuery returns the flows of /api/flows?format=ndjson&QUERY, with the
// token if not "".
func (p *product) flowsQuery(t testing.TB, token, query string) []record.Flow {
	t.Helper()
	req, _ := http.NewRequest("GET", p.base+"/api/flows?format=ndjson&"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /api/flows?format=ndjson&%s: %s %s", query, resp.Status, b)
	}
	return readJSONL(t, resp.Body, "/api/flows?"+query)
}
