package api

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/live"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// memStore is an in-memory stand-in for pkg/store, used only by these
// tests until the real store is wired in (pkg/apiserver's integration
// tests use SQLite). It selects with FlowQuery.Match, so it is also what
// the real store must agree with.
type memStore struct {
	mu      sync.Mutex
	flows   []record.Flow
	samples []record.PacketSample // oldest first
	size    int64
	err     error // returned by every call when set

	// eachGate, when set, makes EachFlow wait on it after eachGateAt
	// flows: a test proves the export streams by reading before it opens.
	eachGate   chan struct{}
	eachGateAt int

	// window is AggregationWindow; series is Series' answer, and seriesQ
	// the queries it was asked.
	window  time.Duration
	series  *SeriesResult
	seriesQ []SeriesQuery
}

func (m *memStore) setErr(err error) {
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
}

// selected returns the flows q selects, in q's order (ties by id).
func (m *memStore) selected(q FlowQuery) ([]record.Flow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	var out []record.Flow
	for i := range m.flows {
		if q.Match(&m.flows[i]) {
			out = append(out, m.flows[i])
		}
	}
	key := func(f *record.Flow) int64 {
		switch q.Order {
		case OrderFirstSeen:
			return f.FirstSeen.UnixNano()
		case OrderBytes:
			return int64(f.BytesSent + f.BytesReceived)
		case OrderPackets:
			return int64(f.PacketsSent + f.PacketsReceived)
		}
		return f.LastSeen.UnixNano()
	}
	slices.SortStableFunc(out, func(a, b record.Flow) int {
		c := cmp.Or(cmp.Compare(key(&a), key(&b)), cmp.Compare(a.ID, b.ID))
		if !q.Ascending {
			c = -c
		}
		return c
	})
	return out, nil
}

// memCursor encodes an offset and the filters it belongs to.
func memCursor(q FlowQuery, off int) string {
	q.Cursor, q.Limit = "", 0
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d|%v", off, q))
}

func (m *memStore) offset(q FlowQuery) (int, error) {
	if q.Cursor == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
	if err != nil {
		return 0, fmt.Errorf("mem store: %w", ErrBadCursor)
	}
	n, _, ok := strings.Cut(string(b), "|")
	off, err := strconv.Atoi(n)
	if !ok || err != nil || memCursor(q, off) != q.Cursor {
		return 0, fmt.Errorf("mem store: %w", ErrBadCursor)
	}
	return off, nil
}

func (m *memStore) Flows(ctx context.Context, q FlowQuery) ([]record.Flow, string, error) {
	all, err := m.selected(q)
	if err != nil {
		return nil, "", err
	}
	off, err := m.offset(q)
	if err != nil {
		return nil, "", err
	}
	if off > len(all) {
		off = len(all)
	}
	end := min(off+q.Limit, len(all))
	next := ""
	if end < len(all) {
		next = memCursor(q, end)
	}
	return all[off:end], next, ctx.Err()
}

func (m *memStore) Flow(ctx context.Context, id string) (record.Flow, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return record.Flow{}, false, m.err
	}
	for _, f := range m.flows {
		if f.ID == id {
			return f, true, nil
		}
	}
	return record.Flow{}, false, nil
}

func (m *memStore) EachFlow(ctx context.Context, q FlowQuery, fn func(*record.Flow) error) error {
	all, err := m.selected(q)
	if err != nil {
		return err
	}
	off, err := m.offset(q)
	if err != nil {
		return err
	}
	for i := off; i < len(all); i++ {
		if q.Limit > 0 && i-off >= q.Limit {
			break
		}
		if m.eachGate != nil && i-off == m.eachGateAt {
			select {
			case <-m.eachGate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := fn(&all[i]); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) History(ctx context.Context, limit int) ([]record.PacketSample, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	var out []record.PacketSample
	for i := len(m.samples) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, m.samples[i])
	}
	return out, nil
}

func (m *memStore) Size(ctx context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.size, m.err
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a server over a live state and a memStore, behind a real
// httptest server.
type fixture struct {
	srv   *Server
	ts    *httptest.Server
	live  *live.State
	store *memStore
	clock *clock
}

// newFixture builds a fixture; configure adjusts the Server before it
// starts.
func newFixture(t testing.TB, configure func(*Server)) *fixture {
	t.Helper()
	c := &clock{t: t0}
	st := live.New()
	st.Now = c.Now
	st.Started = t0.Add(-120 * time.Second)
	ms := &memStore{size: 123456}
	s := &Server{Store: ms, Live: st}
	if configure != nil {
		configure(s)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &fixture{srv: s, ts: ts, live: st, store: ms, clock: c}
}

// get requests path and returns the status, the body and the response.
func (f *fixture) get(t testing.TB, path string, header ...string) (int, []byte, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

func do(t testing.TB, req *http.Request) (int, []byte, *http.Response) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp
}

// getJSON requests path, wants status want, and decodes the body into v.
func (f *fixture) getJSON(t testing.TB, path string, want int, v any) {
	t.Helper()
	code, body, resp := f.get(t, path)
	if code != want {
		t.Fatalf("GET %s: got %d, want %d: %s", path, code, want, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q, want application/json", path, ct)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: decode %s: %v", path, body, err)
	}
}

// mkFlow builds a flow record.
func mkFlow(id, proto string, src string, sport uint16, dst string, dport uint16, first, last time.Time, ps, bs, pr, br uint64) record.Flow {
	num := map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}[proto]
	return record.Flow{
		ID: id, CommunityID: "1:" + id, Proto: proto, ProtoNum: num,
		SrcIP: src, SrcPort: sport, DstIP: dst, DstPort: dport,
		FirstSeen: record.Time{Time: first}, LastSeen: record.Time{Time: last},
		PacketsSent: ps, BytesSent: bs, PacketsReceived: pr, BytesReceived: br,
		State: "SF", Direction: record.DirOutbound, TCPFlags: "SAF", History: "ShADadFf",
	}
}

// Series records the query and answers with m.series (an empty result
// when nil).
func (m *memStore) Series(ctx context.Context, q SeriesQuery) (*SeriesResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	m.seriesQ = append(m.seriesQ, q)
	if m.series == nil {
		return &SeriesResult{Source: "flows"}, nil
	}
	return m.series, nil
}

func (m *memStore) AggregationWindow() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.window
}
