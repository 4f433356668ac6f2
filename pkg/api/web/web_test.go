package web

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// serve runs one request through Handler and returns the recorded response.
func serve(t testing.TB, method, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec
}

func embedded(t testing.TB, name string) []byte {
	t.Helper()
	b, err := static.ReadFile("static/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandler_files(t *testing.T) {
	tests := []struct {
		path, file, contentType string
	}{
		{"/", "index.html", "text/html; charset=utf-8"},
		{"/index.html", "index.html", "text/html; charset=utf-8"},
		{"/?x=1", "index.html", "text/html; charset=utf-8"},
		{"/app.js", "app.js", "text/javascript; charset=utf-8"},
		{"/charts.js", "charts.js", "text/javascript; charset=utf-8"},
		{"/format.js", "format.js", "text/javascript; charset=utf-8"},
		{"/style.css", "style.css", "text/css; charset=utf-8"},
		{"/favicon.svg", "favicon.svg", "image/svg+xml"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rec := serve(t, http.MethodGet, "http://dash.example:3000"+tt.path)
			h := rec.Header()
			if rec.Code != http.StatusOK {
				t.Fatalf("status: got %d, want 200", rec.Code)
			}
			if got := h.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type: got %q, want %q", got, tt.contentType)
			}
			want := embedded(t, tt.file)
			if !bytes.Equal(rec.Body.Bytes(), want) {
				t.Errorf("body: got %d bytes, want the %d of %s", rec.Body.Len(), len(want), tt.file)
			}
			if got := h.Get("Content-Length"); got != strconv.Itoa(len(want)) {
				t.Errorf("Content-Length: got %s, want %d", got, len(want))
			}
			for k, v := range map[string]string{
				"Cache-Control":          "no-cache",
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
				"Vary":                   "Accept-Encoding",
				"Content-Encoding":       "",
				"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
					"connect-src 'self' ws://dash.example:3000 wss://dash.example:3000; base-uri 'none'; " +
					"frame-ancestors 'none'; form-action 'none'",
			} {
				if got := h.Get(k); got != v {
					t.Errorf("%s: got %q, want %q", k, got, v)
				}
			}
			if etag := h.Get("ETag"); !regexp.MustCompile(`^"[A-Za-z0-9_-]{16,}"$`).MatchString(etag) {
				t.Errorf("ETag: got %q, want a quoted hash", etag)
			}
		})
	}
}

// TestHandler_notFound: paths that are not assets answer the API's 404
// JSON error, as the rest of the API does.
func TestHandler_notFound(t *testing.T) {
	for _, p := range []string{"/nope", "/static/app.js", "/app.js/", "/App.js", "/index.htm", "/.git/config", "/favicon.ico", "/web.go", "//app.js"} {
		t.Run(p, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				rec := serve(t, method, p)
				if rec.Code != http.StatusNotFound {
					t.Fatalf("%s: got %d, want 404", method, rec.Code)
				}
				if got := rec.Header().Get("Content-Type"); got != "application/json" {
					t.Errorf("%s Content-Type: got %q, want application/json", method, got)
				}
				if method == http.MethodHead {
					continue
				}
				var e struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != "not found" {
					t.Errorf("body: got %s (%v), want {\"error\":\"not found\"}", rec.Body, err)
				}
			}
		})
	}
}

func TestHandler_method(t *testing.T) {
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		rec := serve(t, m, "/")
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: got %d Allow %q, want 405 Allow \"GET, HEAD\"", m, rec.Code, rec.Header().Get("Allow"))
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Errorf("%s: Content-Type %q, want JSON", m, rec.Header().Get("Content-Type"))
		}
	}
}

func TestHandler_head(t *testing.T) {
	get := serve(t, http.MethodGet, "/app.js")
	head := serve(t, http.MethodHead, "/app.js")
	if head.Code != http.StatusOK || head.Body.Len() != 0 {
		t.Fatalf("HEAD: got %d with %d bytes, want 200 without a body", head.Code, head.Body.Len())
	}
	for _, k := range []string{"Content-Type", "Content-Length", "ETag", "Cache-Control", "Content-Security-Policy"} {
		if got, want := head.Header().Get(k), get.Header().Get(k); got != want {
			t.Errorf("HEAD %s: got %q, want GET's %q", k, got, want)
		}
	}
}

func TestHandler_etag(t *testing.T) {
	first := serve(t, http.MethodGet, "/")
	etag := first.Header().Get("ETag")
	gzETag := serve(t, http.MethodGet, "/", "Accept-Encoding", "gzip").Header().Get("ETag")
	if etag == gzETag {
		t.Fatalf("the gzipped and the identity encodings share the ETag %s", etag)
	}
	other := serve(t, http.MethodGet, "/app.js").Header().Get("ETag")
	if other == etag {
		t.Fatalf("two files share the ETag %s", etag)
	}
	tests := []struct {
		name, ifNoneMatch string
		want              int
	}{
		{"same", etag, http.StatusNotModified},
		{"weak", "W/" + etag, http.StatusNotModified},
		{"gzip's", gzETag, http.StatusNotModified},
		{"in a list", `"x", ` + etag, http.StatusNotModified},
		{"any", "*", http.StatusNotModified},
		{"another file's", other, http.StatusOK},
		{"stale", `"0123456789abcdef0123"`, http.StatusOK},
		{"unquoted", strings.Trim(etag, `"`), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(t, http.MethodGet, "/", "If-None-Match", tt.ifNoneMatch)
			if rec.Code != tt.want {
				t.Fatalf("got %d, want %d", rec.Code, tt.want)
			}
			if tt.want != http.StatusNotModified {
				return
			}
			if rec.Body.Len() != 0 {
				t.Errorf("304 with a %d-byte body", rec.Body.Len())
			}
			if rec.Header().Get("ETag") == "" || rec.Header().Get("Cache-Control") != "no-cache" {
				t.Errorf("304 headers: %v", rec.Header())
			}
		})
	}
}

func TestHandler_gzip(t *testing.T) {
	tests := []struct {
		acceptEncoding string
		gzip           bool
	}{
		{"gzip", true},
		{"gzip, deflate, br, zstd", true},
		{"br;q=1.0, GZIP;q=0.5", true},
		{"*", true},
		{"gzip;q=0", false},
		{"gzip; q=0.000", false},
		{"br", false},
		{"identity", false},
		{"", false},
	}
	want := embedded(t, "app.js")
	for _, tt := range tests {
		t.Run(tt.acceptEncoding, func(t *testing.T) {
			rec := serve(t, http.MethodGet, "/app.js", "Accept-Encoding", tt.acceptEncoding)
			got := rec.Body.Bytes()
			if enc := rec.Header().Get("Content-Encoding"); (enc == "gzip") != tt.gzip {
				t.Fatalf("Content-Encoding: got %q, want gzip %v", enc, tt.gzip)
			}
			if rec.Header().Get("Content-Length") != strconv.Itoa(len(got)) {
				t.Errorf("Content-Length %s for a %d-byte body", rec.Header().Get("Content-Length"), len(got))
			}
			if tt.gzip {
				zr, err := gzip.NewReader(bytes.NewReader(got))
				if err != nil {
					t.Fatal(err)
				}
				if got, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("body: got %d bytes, want the %d of app.js", len(got), len(want))
			}
		})
	}
}

func TestContentSecurityPolicy(t *testing.T) {
	tests := []struct {
		host, connect string
	}{
		{"127.0.0.1:3000", "'self' ws://127.0.0.1:3000 wss://127.0.0.1:3000"},
		{"[::1]:3000", "'self' ws://[::1]:3000 wss://[::1]:3000"},
		{"lightshark.example", "'self' ws://lightshark.example wss://lightshark.example"},
		{"", "'self'"},
		{"evil.example; script-src *", "'self'"},
		{"a.example,b.example", "'self'"},
		{"a.example'", "'self'"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			csp := contentSecurityPolicy(tt.host)
			directives := map[string]string{}
			for _, d := range strings.Split(csp, ";") {
				name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
				if _, dup := directives[name]; dup {
					t.Errorf("directive %s given twice in %q", name, csp)
				}
				directives[name] = value
			}
			want := map[string]string{
				"default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self' data:",
				"connect-src": tt.connect, "base-uri": "'none'", "frame-ancestors": "'none'", "form-action": "'none'",
			}
			if len(directives) != len(want) {
				t.Errorf("got %d directives, want %d: %q", len(directives), len(want), csp)
			}
			for k, v := range want {
				if directives[k] != v {
					t.Errorf("%s: got %q, want %q", k, directives[k], v)
				}
			}
		})
	}
}

// TestEmbeddedSize keeps the dashboard small: all files together under
// MaxTotalSize, uncompressed.
func TestEmbeddedSize(t *testing.T) {
	total := 0
	err := fs.WalkDir(static, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(name)
		total += len(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if total == 0 || total > MaxTotalSize {
		t.Errorf("embedded files: got %d bytes, want at most %d", total, MaxTotalSize)
	}
	t.Logf("embedded files: %d bytes", total)
}

// TestStatic_CSPClean checks what the Content-Security-Policy would block
// (or what would need to loosen it): inline scripts, styles and event
// handlers, eval, and references to anything but the embedded files.
func TestStatic_CSPClean(t *testing.T) {
	index := string(embedded(t, "index.html"))
	bad := []struct{ what, re string }{
		{"inline script", `<script(?:\s[^>]*)?>\s*[^<\s]`},
		{"style element", `<style`},
		{"style attribute", `\sstyle=`},
		{"event handler attribute", `\son[a-z]+=`},
		{"javascript: URL", `javascript:`},
		{"external URL", `(?:src|href)="(?:https?:)?//`},
	}
	for _, b := range bad {
		if m := regexp.MustCompile(b.re).FindString(index); m != "" {
			t.Errorf("index.html has an %s: %q", b.what, m)
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(index, -1) {
		if !strings.Contains(tag, ` src="`) {
			t.Errorf("index.html has a script without src: %s", tag)
		}
	}
	// Every file index.html or a module refers to is embedded.
	refs := regexp.MustCompile(`(?:src|href)="([^"?#]+)`).FindAllStringSubmatch(index, -1)
	for _, name := range []string{"app.js", "charts.js", "format.js"} {
		js := string(embedded(t, name))
		for _, re := range []string{`\beval\(`, `new Function\(`, `setTimeout\(['"]`, `innerHTML`, `\.style\.cssText`, `console\.(?:log|warn|error)\(`} {
			if m := regexp.MustCompile(re).FindString(js); m != "" {
				t.Errorf("%s uses %q", name, m)
			}
		}
		refs = append(refs, regexp.MustCompile(`from '\./([^']+)'`).FindAllStringSubmatch(js, -1)...)
	}
	for _, r := range refs {
		ref := r[1]
		if strings.HasPrefix(ref, "api/") || strings.HasPrefix(ref, "data:") {
			continue
		}
		if _, err := static.ReadFile(path.Join("static", ref)); err != nil {
			t.Errorf("reference to %q: not embedded", ref)
		}
	}
	if len(refs) < 4 {
		t.Errorf("found %d references, want at least the stylesheet, the icon and the modules", len(refs))
	}
}

// TestHandler_startsSmall: building the handler costs about the files'
// size, not a gzip compressor's megabyte (the API server builds it at
// start, browsed or not, and it runs under a memory limit of a few MiB);
// the files are compressed on the first request.
func TestHandler_startsSmall(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h := Handler()
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 2*MaxTotalSize {
		t.Errorf("Handler allocated %d bytes, want at most %d (twice the files' bound)", got, 2*MaxTotalSize)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Encoding") != "gzip" {
		t.Errorf("first request: status %d, Content-Encoding %q; want 200 gzip", rec.Code, rec.Header().Get("Content-Encoding"))
	}
}
