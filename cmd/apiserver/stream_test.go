package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
)

// TestStreamThroughBinaries: the real lightshark-apiserver, a known batch
// sent over its Unix socket by ipc.Client (as the capturer sends it), and a
// real WebSocket client (gorilla/websocket's dialer) on /api/stream with
// flow updates opted in and filtered (flows=1&port=443): the client sees a
// stats message with the batch's totals, and exactly the batch's flows on
// port 443 with their numbers.
func TestStreamThroughBinaries(t *testing.T) {
	dir := t.TempDir()
	apiBin := build(t, dir, "./cmd/apiserver", "lightshark-apiserver")
	sock := filepath.Join(dir, "ipc.sock")
	base, _, logs := startAPIServer(t, apiBin, sock, filepath.Join(dir, "traffic.db"))

	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/api/stream?flows=1&port=443"
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, wsURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)\n%s", wsURL, err, resp, logs.String())
	}
	defer ws.Close()
	context.AfterFunc(ctx, func() { ws.Close() })

	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	flow := func(id, src string, sport uint16, dst string, dport uint16, ps, bs, pr, br uint64) record.Flow {
		return record.Flow{ID: id, CommunityID: "1:" + id, Proto: "tcp", ProtoNum: 6,
			SrcIP: src, SrcPort: sport, DstIP: dst, DstPort: dport,
			FirstSeen: record.Time{Time: t0}, LastSeen: record.Time{Time: t0.Add(2 * time.Second)},
			PacketsSent: ps, BytesSent: bs, PacketsReceived: pr, BytesReceived: br,
			TCPFlags: "SPA", History: "ShAD", State: "S1", Direction: record.DirOutbound}
	}
	batch := &ipc.Batch{
		Flows: []record.Flow{
			flow("00000000000000a1", "10.0.0.2", 40001, "192.0.2.10", 443, 12, 1500, 10, 9000),
			flow("00000000000000a2", "10.0.0.2", 40002, "192.0.2.11", 5432, 7, 700, 7, 2100),
		},
		Ended: []record.Flow{
			flow("00000000000000a3", "198.51.100.7", 443, "10.0.0.2", 40003, 3, 180, 4, 4800),
		},
		Samples: []record.PacketSample{{Timestamp: t0.UnixMilli(), SrcIP: "10.0.0.2", DstIP: "192.0.2.10",
			SrcPort: 40001, DstPort: 443, Protocol: "tcp", Length: 1500, FlowID: "00000000000000a1"}},
		Stats: record.CaptureStats{Packets: 4321, Bytes: 3210000, KernelReceived: 4321, FlowPackets: 4300, Flows: 3, ActiveFlows: 2},
	}
	batch.Ended[0].EndReason = record.EndClosed
	batch.Ended[0].State = "SF"

	// The first stats message comes at once: then the subscription is
	// open, and the batch's flow updates cannot be missed.
	type message struct {
		Type              string       `json:"type"`
		TotalPackets      uint64       `json:"total_packets"`
		TotalBytes        uint64       `json:"total_bytes"`
		ActiveConnections int          `json:"active_connections"`
		Flow              *record.Flow `json:"flow"`
		Count             uint64       `json:"count"`
	}
	read := func() message {
		t.Helper()
		var m message
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("read the stream: %v\n%s", err, logs.String())
		}
		return m
	}
	if m := read(); m.Type != "stats" {
		t.Fatalf("first message %+v, want stats", m)
	}

	cl := &ipc.Client{Path: sock}
	if err := cl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cl.Send(batch); err != nil {
		t.Fatal(err)
	}
	if err := cl.Close(ctx); err != nil {
		t.Fatalf("the batch was not acknowledged: %v\n%s", err, logs.String())
	}

	want := map[string]record.Flow{batch.Flows[0].ID: batch.Flows[0], batch.Ended[0].ID: batch.Ended[0]}
	got := map[string]record.Flow{}
	sawStats := false
	for !sawStats || len(got) < len(want) {
		m := read()
		switch m.Type {
		case "stats":
			if m.TotalPackets == batch.Stats.Packets {
				sawStats = true
				if m.TotalBytes != batch.Stats.Bytes || m.ActiveConnections != 2 {
					t.Errorf("stats %+v: want total_bytes %d and 2 active connections (the third ended)", m, batch.Stats.Bytes)
				}
			}
		case "flow":
			if m.Flow == nil {
				t.Fatalf("flow message without a flow: %+v", m)
			}
			if _, ok := want[m.Flow.ID]; !ok {
				t.Errorf("flow %s (ports %d, %d) passed the port=443 filter", m.Flow.ID, m.Flow.SrcPort, m.Flow.DstPort)
			}
			got[m.Flow.ID] = *m.Flow
		default:
			t.Fatalf("unexpected message %+v", m)
		}
	}
	for id, w := range want {
		g := got[id]
		if !sameFlow(g, w) || !g.FirstSeen.Equal(w.FirstSeen.Time) {
			b, _ := json.Marshal(g)
			t.Errorf("flow %s on the stream: %s\nwant %+v", id, b, w)
		}
	}
}
