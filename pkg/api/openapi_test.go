package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPI_routes: every route the server registers is documented in
// openapi.json, and every documented route resolves to that registered
// route.
func TestOpenAPI_routes(t *testing.T) {
	f := newFixture(t, func(s *Server) { s.Dashboard = http.NotFoundHandler() })
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi: got %q, want 3.x", doc.OpenAPI)
	}
	methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}
	var documented []string
	for path, item := range doc.Paths {
		for m := range item {
			if methods[m] {
				documented = append(documented, strings.ToUpper(m)+" "+path)
			}
		}
	}
	slices.Sort(documented)
	registered := slices.Sorted(slices.Values(f.srv.patterns))
	if !slices.Equal(documented, registered) {
		t.Errorf("documented routes differ from registered ones:\ndocumented: %q\nregistered: %q", documented, registered)
	}
	// Each documented route, with its path parameters filled in, is
	// served by the pattern of the same name.
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, route := range documented {
		method, path, _ := strings.Cut(route, " ")
		req := httptest.NewRequest(method, param.ReplaceAllString(path, "0123abcd"), nil)
		if _, pattern := f.srv.mux.Handler(req); pattern != route {
			t.Errorf("%s: served by %q", route, pattern)
		}
	}
}

// TestOpenAPI_document: the document is served as is, and every $ref in
// it resolves.
func TestOpenAPI_document(t *testing.T) {
	f := newFixture(t, nil)
	code, body, _ := f.get(t, "/api/openapi.json")
	if code != 200 || string(body) != string(openAPIDoc) {
		t.Fatalf("GET /api/openapi.json: got %d, %d bytes", code, len(body))
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				var at any = doc
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, _ := at.(map[string]any)
					at = m[part]
				}
				if at == nil {
					t.Errorf("unresolved $ref %q", ref)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
}
