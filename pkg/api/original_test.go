package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// The original tool's example responses, verbatim from ORIGINAL.md.
const (
	originalHealth  = `{"status": "ok", "active_connections": 12, "total_packets": 15430}`
	originalLive    = `{"connections": [{"connection": "172.18.0.3:5432 -> 172.18.0.2:49152", "stats": {"bytes_sent": 2048, "bytes_received": 0, "packets_count": 32}}], "total_packets": 100, "total_bytes": 5000}`
	originalHistory = `[{"timestamp": 1678886400123, "src_ip": "10.0.0.5", "dst_ip": "142.250.1.1", "src_port": 45678, "dst_port": 443, "protocol": "TCP", "length": 1500}]`
	originalStats   = `{"uptime_seconds": 120, "total_packets": 5000, "total_bytes": 1234567, "active_connections": 15, "packets_per_second": 41.6, "bytes_per_second": 10288}`
	originalStream  = `{"total_packets": 100, "total_bytes": 5000, "active_connections": 3}`
)

// Typed views of the original's responses: Go's decoder refuses a string
// where a number was, a fraction in an integer, and so on, so decoding
// our responses into these checks the field types (unknown fields, our
// superset, are ignored, as the original's clients ignore them).
type (
	origHealth struct {
		Status            string `json:"status"`
		ActiveConnections uint64 `json:"active_connections"`
		TotalPackets      uint64 `json:"total_packets"`
	}
	origLive struct {
		Connections []struct {
			Connection string `json:"connection"`
			Stats      struct {
				BytesSent     uint64 `json:"bytes_sent"`
				BytesReceived uint64 `json:"bytes_received"`
				PacketsCount  uint64 `json:"packets_count"`
			} `json:"stats"`
		} `json:"connections"`
		TotalPackets uint64 `json:"total_packets"`
		TotalBytes   uint64 `json:"total_bytes"`
	}
	origHistory []struct {
		Timestamp int64  `json:"timestamp"`
		SrcIP     string `json:"src_ip"`
		DstIP     string `json:"dst_ip"`
		SrcPort   uint16 `json:"src_port"`
		DstPort   uint16 `json:"dst_port"`
		Protocol  string `json:"protocol"`
		Length    uint64 `json:"length"`
	}
	origStats struct {
		UptimeSeconds     uint64  `json:"uptime_seconds"`
		TotalPackets      uint64  `json:"total_packets"`
		TotalBytes        uint64  `json:"total_bytes"`
		ActiveConnections uint64  `json:"active_connections"`
		PacketsPerSecond  float64 `json:"packets_per_second"`
		BytesPerSecond    float64 `json:"bytes_per_second"`
	}
	origStream struct {
		TotalPackets      uint64 `json:"total_packets"`
		TotalBytes        uint64 `json:"total_bytes"`
		ActiveConnections uint64 `json:"active_connections"`
	}
)

// kind is a JSON value's type.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func decodeAny(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// checkShape reports every field of the example missing from got or of
// another JSON type, recursively (array elements against the example's
// first element). Extra fields in got are fine: ours is a superset.
func checkShape(t testing.TB, path string, example, got any) {
	t.Helper()
	if kind(example) != kind(got) {
		t.Errorf("%s: got %s, want %s as in the original", path, kind(got), kind(example))
		return
	}
	switch ex := example.(type) {
	case map[string]any:
		g := got.(map[string]any)
		for k, v := range ex {
			gv, ok := g[k]
			if !ok {
				t.Errorf("%s.%s: missing (the original has it)", path, k)
				continue
			}
			checkShape(t, path+"."+k, v, gv)
		}
	case []any:
		g := got.([]any)
		if len(ex) > 0 && len(g) == 0 {
			t.Errorf("%s: empty array; the test needs an element to compare", path)
			return
		}
		for i := range g {
			checkShape(t, fmt.Sprintf("%s[%d]", path, i), ex[0], g[i])
		}
	}
}

// TestOriginalShapes: our responses have every field of the original's
// examples, with the same JSON types, and decode into the original's
// types; the original's examples themselves decode into those types (so
// the typed views are right).
func TestOriginalShapes(t *testing.T) {
	f := newFedFixture(t, nil)
	cases := []struct {
		path    string
		example string
		typed   func() any
	}{
		{"/api/health", originalHealth, func() any { return new(origHealth) }},
		{"/api/live", originalLive, func() any { return new(origLive) }},
		{"/api/history?limit=5", originalHistory, func() any { return new(origHistory) }},
		{"/api/stats", originalStats, func() any { return new(origStats) }},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			if err := json.Unmarshal([]byte(tc.example), tc.typed()); err != nil {
				t.Fatalf("the original's example does not decode into its typed view: %v", err)
			}
			code, body, _ := f.get(t, tc.path)
			if code != 200 {
				t.Fatalf("got %d %s", code, body)
			}
			checkShape(t, tc.path, decodeAny(t, []byte(tc.example)), decodeAny(t, body))
			if err := json.Unmarshal(body, tc.typed()); err != nil {
				t.Errorf("our response does not decode into the original's types: %v\n%s", err, body)
			}
		})
	}
	t.Run("/api/stream", func(t *testing.T) {
		if err := json.Unmarshal([]byte(originalStream), new(origStream)); err != nil {
			t.Fatal(err)
		}
		c := dialStream(t, f, "")
		msg := readMessage(t, c)
		checkShape(t, "stream", decodeAny(t, []byte(originalStream)), decodeAny(t, msg.raw))
		if err := json.Unmarshal(msg.raw, new(origStream)); err != nil {
			t.Errorf("stream message does not decode into the original's types: %v", err)
		}
	})
}
