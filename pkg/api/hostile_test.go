package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/live"
)

// realServer runs s behind the *http.Server NewHTTPServer builds (its
// timeouts and limits), on a loopback port, and returns the address.
func realServer(t testing.TB, configure func(*http.Server)) (string, *fixture) {
	t.Helper()
	f := &fixture{clock: &clock{t: t0}, store: &memStore{flows: storeFlows, samples: storeSamples}}
	f.live = live.New()
	f.live.Now = f.clock.Now
	f.srv = &Server{Store: f.store, Live: f.live}
	f.feedLive()
	hs := f.srv.NewHTTPServer("127.0.0.1:0")
	if configure != nil {
		configure(hs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		if err := f.srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return ln.Addr().String(), f
}

// rawRequest writes req on a new connection and reads one response.
func rawRequest(t testing.TB, addr, req string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// healthy checks the server still answers.
func healthy(t testing.TB, addr string) {
	t.Helper()
	resp, _ := rawRequest(t, addr, "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("health after hostile input: %d", resp.StatusCode)
	}
}

func TestHostile_oversizedHeaders(t *testing.T) {
	addr, _ := realServer(t, nil)
	big := strings.Repeat("a", 64<<10)
	for _, req := range []string{
		"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n",
		"GET /api/health HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Many: 1\r\n", 4000) + "\r\n",
		"GET /api/flows?ip=" + big + " HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		resp, _ := rawRequest(t, addr, req)
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("got %d, want 431", resp.StatusCode)
		}
	}
	healthy(t, addr)
}

func TestHostile_longQuery(t *testing.T) {
	addr, _ := realServer(t, nil)
	// Under the header limit but over the query limit: a JSON 414.
	resp, body := rawRequest(t, addr, "GET /api/flows?ip="+strings.Repeat("1", 10<<10)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	var e errorBody
	if resp.StatusCode != http.StatusRequestURITooLong || json.Unmarshal(body, &e) != nil {
		t.Errorf("got %d %s, want a JSON 414", resp.StatusCode, body)
	}
	healthy(t, addr)
}

// TestHostile_slowloris: a client that never finishes its headers is cut
// off by ReadHeaderTimeout, as is an idle keep-alive connection by
// IdleTimeout.
func TestHostile_slowloris(t *testing.T) {
	addr, _ := realServer(t, func(hs *http.Server) {
		hs.ReadHeaderTimeout = 200 * time.Millisecond
		hs.IdleTimeout = 200 * time.Millisecond
	})
	for _, tc := range []struct {
		name  string
		start string
	}{
		{"partial headers", "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: "},
		{"nothing at all", ""},
		{"idle keep-alive", "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.start); err != nil {
				t.Fatal(err)
			}
			// The guard deadline is far beyond the server's timeouts: the
			// read must end because the server closed, not because of it.
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.Copy(io.Discard, c) // a response (keep-alive case), then EOF
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after 10 s: %v", err)
			}
		})
	}
	healthy(t, addr)
}

func TestHostile_garbage(t *testing.T) {
	addr, _ := realServer(t, nil)
	for _, req := range []string{
		"\x00\x01\x02\x03 garbage\r\n\r\n",
		"GET /api/health HTTP/9.9\r\n\r\n",
		"GET /api/health\r\n\r\n",
		"GET /api/flows?%%%%%% HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /api/flows/%00 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /api/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /api/flows HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc",
		"GET /api/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc",
		"GET /api/stats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffff\r\nabc",
		"GET /api/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
		"GET /api/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: bad\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, req)
		// An answer (or a close) comes at once, not after ReadTimeout.
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%q: no answer: %v", req[:min(len(req), 40)], err)
		}
		if err == nil {
			if resp.StatusCode < 300 {
				t.Errorf("%q: got %d, want an error status", req[:min(len(req), 40)], resp.StatusCode)
			}
			resp.Body.Close()
		}
		c.Close()
	}
	healthy(t, addr)
}

// TestHostile_randomQueries throws random parameter names and values at
// the endpoints: every answer is 200, 400 or 414 with a JSON body.
func TestHostile_randomQueries(t *testing.T) {
	addr, _ := realServer(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"ip", "cidr", "port", "proto", "state", "direction", "since", "until", "order", "limit", "cursor", "format", "flows", "x", ""}
	values := []string{"", "0", "-1", "65535", "65536", "1e9", "10.0.0.1", "::1", "10.0.0.0/8", "::/0", "tcp", "TCP", "sf", "inbound",
		"2026-03-01T12:00:00Z", "2026-03-01T12:00:00.123456789+02:00", "1700000000000", "ndjson", "bytes_asc", "%00", "\xff\xfe", "🦈", "a=b&c"}
	paths := []string{"/api/flows", "/api/history", "/api/live", "/api/stats", "/api/stream", "/api/health", "/metrics", "/api/flows/000000000000000a"}
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range 400 {
		q := url.Values{}
		for range rng.IntN(5) {
			v := values[rng.IntN(len(values))]
			if rng.IntN(4) == 0 {
				b := make([]byte, rng.IntN(40))
				for j := range b {
					b[j] = byte(rng.IntN(256))
				}
				v = string(b)
			}
			q.Add(names[rng.IntN(len(names))], v)
		}
		u := "http://" + addr + paths[rng.IntN(len(paths))] + "?" + q.Encode()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("request %d %s: %v", i, u, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case 200, 400, 414:
		default:
			t.Errorf("%s: got %d %s", u, resp.StatusCode, body)
		}
		ct := resp.Header.Get("Content-Type")
		if ct == "application/json" && !json.Valid(body) {
			t.Errorf("%s: invalid JSON %q", u, body)
		}
		if resp.StatusCode != 200 && ct != "application/json" {
			t.Errorf("%s: error with Content-Type %q", u, ct)
		}
	}
	healthy(t, addr)
}

// FuzzQuery: no query string makes a handler fail other than with a JSON
// 400 or 414 (or succeed).
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"", "port=443", "ip=10.0.0.1&cidr=10.0.0.0/8", "since=1700000000000&until=2026-01-01T00:00:00Z",
		"order=bytes_asc&limit=1000", "cursor=abc", "format=ndjson&limit=3", "flows=1&proto=udp", "%zz", "port=1&port=2",
	} {
		f.Add(s)
	}
	fx := newFixture(f, nil)
	fx.store.flows = storeFlows
	fx.store.samples = storeSamples
	fx.feedLive()
	h := fx.srv.Handler()
	f.Fuzz(func(t *testing.T, raw string) {
		for _, path := range []string{"/api/flows", "/api/stream", "/api/history", "/api/live"} {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.URL.Path, req.URL.RawQuery = path, raw
			req.RemoteAddr = "127.0.0.1:1234"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			switch w.Code {
			case 200:
				if w.Header().Get("Content-Type") == "application/json" && !json.Valid(w.Body.Bytes()) {
					t.Fatalf("%s?%s: invalid JSON", path, raw)
				}
			case 400, 414:
				var e errorBody
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
					t.Fatalf("%s?%q: error body %q", path, raw, w.Body.String())
				}
			default:
				t.Fatalf("%s?%q: status %d: %s", path, raw, w.Code, w.Body.String())
			}
		}
		// The same bytes as a flow id.
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path = "/api/flows/" + raw
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("flow id %q: status %d", raw, w.Code)
		}
	})
}
