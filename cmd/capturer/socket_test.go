package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/ipc/ipctest"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// TestSocketImport sends a capture file to a real IPC server over its Unix
// socket (--read FILE --socket PATH): what the server committed equals, flow
// for flow, what --output jsonl prints for the same file, and the packet
// samples and statistics arrive too; the last batch, alone, says the file
// was read to its end (Done).
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
	if want := []uint64{got.LastSeq}; !slices.Equal(got.DoneSeqs, want) {
		t.Errorf("done on batches %v of %v, want %v: the last only", got.DoneSeqs, got.Seqs, want)
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

// TestSocketImportNotDone: an import that does not read its source to the
// end sends its last batch without Done, so that the API server counts it
// as lost, not finished: a file that ends inside a packet (a read error,
// exit status 1), and standard input interrupted by SIGTERM mid-read.
func TestSocketImportNotDone(t *testing.T) {
	shared := testenv.SharedDir(t)
	bin := buildCapturer(t)
	data, err := os.ReadFile(filepath.Join(shared, "pcaps", "conformance", "gopacket-cip.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "truncated.pcap")
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// run runs the capturer against sock, with h its server's handler,
		// and returns its exit status.
		run func(t *testing.T, sock string, h *ipctest.Handler) int
	}{
		{"file ends inside a packet", func(t *testing.T, sock string, _ *ipctest.Handler) int {
			_, _, code := runBin(t, exec.Command(bin, "--read", truncated, "--socket", sock, "-q"))
			return code
		}},
		{"SIGTERM while reading standard input", func(t *testing.T, sock string, h *ipctest.Handler) int {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pw.Close()
			cmd := exec.Command(bin, "--read", "-", "--socket", sock, "-q")
			cmd.Stdin = pr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pr.Close()
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			// Feed the file slowly, and keep feeding until the capturer
			// exits: its reader returns from a read only when bytes come.
			stop := make(chan struct{})
			var fed sync.WaitGroup
			fed.Add(1)
			go func() {
				defer fed.Done()
				for off := 0; ; off += 4096 {
					if off >= len(data) {
						off = 24 // the records again, after the file header
					}
					if _, err := pw.Write(data[off:min(off+4096, len(data))]); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}()
			defer func() {
				close(stop)
				fed.Wait()
			}()
			waitFor(t, "a first batch", func() bool { return len(h.Instances()) > 0 })
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
				return cmd.ProcessState.ExitCode()
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatal("no exit within 30 s of SIGTERM")
			}
			return -1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &ipctest.Handler{}
			sock := ipctest.SocketPath(t)
			srv := &ipc.Server{Path: sock, Handler: h}
			if err := srv.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer srv.Close(context.Background())
			code := tt.run(t, sock, h)
			ids := h.Instances()
			if code != 1 || len(ids) != 1 {
				t.Fatalf("exit %d, %d instances; want 1, 1", code, len(ids))
			}
			got := h.Instance(ids[0])
			if len(got.Seqs) == 0 || got.Stats.Packets == 0 || len(got.DoneSeqs) != 0 {
				t.Errorf("batches %v, %d packets, done on %v; want batches with packets, none done",
					got.Seqs, got.Stats.Packets, got.DoneSeqs)
			}
		})
	}
}
