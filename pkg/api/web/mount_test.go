package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lightshark-dev/lightshark-mini/pkg/api"
	"github.com/lightshark-dev/lightshark-mini/pkg/api/web"
	"github.com/lightshark-dev/lightshark-mini/pkg/live"
)

// TestHandler_mounted serves the dashboard as pkg/apiserver does, behind
// api.Server with a token: the dashboard is public, the API is not, and
// unknown paths are the API's JSON 404 whichever handler answers.
func TestHandler_mounted(t *testing.T) {
	s := &api.Server{Live: live.New(), Token: "s3cret", Dashboard: web.Handler()}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() { _ = s.Close(t.Context()) })

	tests := []struct {
		method, path string
		code         int
		contentType  string
	}{
		{http.MethodGet, "/", 200, "text/html; charset=utf-8"},
		{http.MethodHead, "/", 200, "text/html; charset=utf-8"},
		{http.MethodGet, "/app.js", 200, "text/javascript; charset=utf-8"},
		{http.MethodGet, "/style.css", 200, "text/css; charset=utf-8"},
		{http.MethodGet, "/nope", 404, "application/json"},
		{http.MethodGet, "/api/nope", 404, "application/json"},
		{http.MethodGet, "/api/stats", 401, "application/json"},
		{http.MethodPost, "/", 405, "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, ts.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code {
				t.Fatalf("got %d, want %d: %s", resp.StatusCode, tt.code, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type: got %q, want %q", got, tt.contentType)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("X-Content-Type-Options: got %q, want nosniff", resp.Header.Get("X-Content-Type-Options"))
			}
			switch {
			case tt.code == 200 && tt.method == http.MethodGet:
				csp := resp.Header.Get("Content-Security-Policy")
				if host := strings.TrimPrefix(ts.URL, "http://"); !strings.Contains(csp, "ws://"+host) {
					t.Errorf("Content-Security-Policy %q does not allow ws://%s", csp, host)
				}
			case tt.code >= 400 && tt.method != http.MethodHead:
				var e struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("body: got %s (%v), want a JSON error", body, err)
				}
			}
		})
	}
}
