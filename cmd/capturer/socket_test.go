package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/ipc/ipctest"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// TestSocketImport sends a capture file to a real IPC server over its Unix
// socket (--read FILE --socket PATH): what the server committed equals, flow
// for flow, what --output jsonl prints for the same file, and the packet
// samples and statistics arrive too.
func TestSocketImport(t *testing.T) {
	shared := testenv.SharedDir(t)
	bin := buildCapturer(t)
	path := filepath.Join(shared, "pcaps", "conformance", "gopacket-cip.pcap")

	h := &ipctest.Handler{}
	var mu sync.Mutex
	var instance string
	h.BeforeApply = func(_ context.Context, p ipc.Peer, _ *ipc.Batch) error {
		mu.Lock()
		instance = p.Hello.InstanceID
		mu.Unlock()
		return nil
	}
	sock := ipctest.SocketPath(t)
	srv := &ipc.Server{Path: sock, Handler: h}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())

	_, stderr, code := runBin(t, exec.Command(bin, "--read", path, "--socket", sock, "--sample-rate", "10", "-q"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	jsonl, _, code := runBin(t, exec.Command(bin, "--read", path, "--output", "jsonl", "-q"))
	if code != 0 {
		t.Fatalf("jsonl: exit %d", code)
	}
	want := readFlows(t, jsonl)

	mu.Lock()
	id := instance
	mu.Unlock()
	got := h.Instance(id)
	if len(got.Flows) != len(want) || len(want) < 1000 {
		t.Fatalf("server holds %d flows, jsonl has %d", len(got.Flows), len(want))
	}
	for _, w := range want {
		g, ok := got.Flows[w.ID]
		if !ok {
			t.Errorf("flow %s (%s) not on the server", w.ID, flowKey(w))
			continue
		}
		if g != w {
			t.Errorf("flow %s:\n server %+v\n jsonl  %+v", w.ID, g, w)
		}
	}
	if len(got.Twice) != 0 {
		t.Errorf("batches applied twice: %v", got.Twice)
	}
	// 26068 packets, 1 in 10 sampled (within the per-batch bound, or
	// counted as skipped).
	if n := uint64(len(got.Samples)) + got.Stats.SamplesSkipped; n != 2606 {
		t.Errorf("%d samples + %d skipped, want 2606", len(got.Samples), got.Stats.SamplesSkipped)
	}
	if got.Stats.Packets != 26068 || got.Stats.FlowPackets+got.Stats.NonIP != 26068 {
		t.Errorf("stats %+v", got.Stats)
	}
}
