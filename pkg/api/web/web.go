// Package web is the dashboard: static HTML, CSS and JavaScript embedded in
// the binary (no build step, no CDN) and served by Handler at GET /. The
// page itself reads the API (/api/health, /api/live, /api/stream,
// /api/flows, /api/series) from the browser, so the handler only serves
// files; it holds no data and needs no token.
//
// It imports only the standard library. pkg/api mounts it (Server.Dashboard)
// and pkg/apiserver wires it in; it must not import pkg/api or anything
// below it.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
)

// static holds the dashboard's files, served at the root: index.html at /,
// the others under their own names.
//
//go:embed static
var static embed.FS

// MaxTotalSize bounds the embedded files' total size in bytes
// (uncompressed); a test enforces it.
const MaxTotalSize = 100 << 10

// contentTypes are the types of the files served, by extension. They are
// listed here rather than taken from mime.TypeByExtension, whose answers
// depend on the host's mime.types.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".json": "application/json",
}

// asset is one file, ready to serve.
type asset struct {
	contentType string
	body        []byte
	etag        string // quoted: a hash of body
	gz          []byte // body gzipped, nil when that does not make it smaller
	gzETag      string
}

// handler serves the assets. Once compressed (on the first request for a
// file, so that an API server nobody browses never pays for a
// compressor), it is immutable.
type handler struct {
	assets   map[string]*asset // by URL path: "/" for index.html, "/app.js"
	compress sync.Once         // fills each asset's gz and gzETag
}

// Handler returns the dashboard's handler: GET and HEAD of / (index.html)
// and of each asset by name (/app.js, /style.css …); any other path
// answers 404 with a JSON error, like the rest of the API, and any other
// method 405.
//
// Every file is sent with "Cache-Control: no-cache" and an ETag on its
// content hash (so a browser revalidates with If-None-Match and gets 304
// while the binary is unchanged), gzipped when the client accepts it, and
// with a strict Content-Security-Policy (scripts, styles and connections
// to the page's own origin only, plus its ws: and wss: URLs for
// /api/stream). The returned handler is safe for concurrent use.
func Handler() http.Handler {
	h := &handler{assets: map[string]*asset{}}
	err := fs.WalkDir(static, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(name)
		if err != nil {
			return err
		}
		urlPath := strings.TrimPrefix(name, "static")
		if urlPath == "/index.html" {
			urlPath = "/"
		}
		h.assets[urlPath] = newAsset(urlPath, body)
		return nil
	})
	if err != nil {
		// The files are compiled in: failing to read them is a bug.
		panic("web: read embedded files: " + err.Error())
	}
	return h
}

func newAsset(name string, body []byte) *asset {
	ct := contentTypes[path.Ext(name)]
	if name == "/" {
		ct = contentTypes[".html"]
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	sum := sha256.Sum256(body)
	tag := base64.RawURLEncoding.EncodeToString(sum[:18])
	return &asset{contentType: ct, body: body, etag: `"` + tag + `"`}
}

// gzipAll gzips every asset with one compressor (a compressor at the best
// level holds about a megabyte), keeping the result where it is smaller.
func (h *handler) gzipAll() {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // the level is valid
	for _, a := range h.assets {
		buf.Reset()
		zw.Reset(&buf)
		_, _ = zw.Write(a.body) // a bytes.Buffer does not fail
		_ = zw.Close()
		if buf.Len() < len(a.body) {
			a.gz, a.gzETag = bytes.Clone(buf.Bytes()), strings.TrimSuffix(a.etag, `"`)+`-gz"`
		}
	}
}

// ServeHTTP serves the asset at r.URL.Path.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed (allowed: GET, HEAD)")
		return
	}
	name := r.URL.Path
	if name == "/index.html" {
		name = "/"
	}
	a := h.assets[name]
	if a == nil {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	h.compress.Do(h.gzipAll)
	hdr.Set("Content-Security-Policy", contentSecurityPolicy(r.Host))
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Add("Vary", "Accept-Encoding")

	body, etag := a.body, a.etag
	if a.gz != nil && acceptsGzip(r.Header.Values("Accept-Encoding")) {
		body, etag = a.gz, a.gzETag
		hdr.Set("Content-Encoding", "gzip")
	}
	hdr.Set("ETag", etag)
	if etagMatch(r.Header.Get("If-None-Match"), a) {
		hdr.Del("Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body) // fails only when the client is gone
}

// contentSecurityPolicy is the policy of every file: nothing but the
// page's own scripts, styles and images, and connections to its own
// origin. connect-src also names the WebSocket URLs of host, which CSP
// Level 2 browsers do not cover with 'self'. A Host header holding more
// than a host and port (net/http lets through characters such as ';',
// which would start a new directive) is left out.
func contentSecurityPolicy(host string) string {
	connect := "'self'"
	if validHost(host) {
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src " + connect + "; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
}

// validHost reports whether host is a DNS name or an IP address (IPv6 in
// brackets), with an optional port.
func validHost(host string) bool {
	if host == "" || len(host) > 262 {
		return false
	}
	for _, c := range []byte(host) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}

// acceptsGzip reports whether the Accept-Encoding values accept gzip
// (RFC 9110 §12.5.3: "gzip" or "*", with a q-value above zero).
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(item, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" && coding != "*" {
				continue
			}
			return !zeroQ(params)
		}
	}
	return false
}

// zeroQ reports whether params (after the coding's ';') hold q=0.
func zeroQ(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q == 0
		}
	}
	return false
}

// etagMatch reports whether an If-None-Match header names either of a's
// ETags (both stand for the same content), or is "*". The comparison is
// weak (RFC 9110 §13.1.2), so a W/ prefix added by a proxy still matches.
func etagMatch(header string, a *asset) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == a.etag || (a.gz != nil && t == a.gzETag) {
			return true
		}
	}
	return false
}

// writeError answers with the API's JSON error shape, {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Del("Content-Length")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg}) // fails only when the client is gone
}
