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
	"github.com/lightshark-dev/lightshark-mini/pkg/capture/capturetest"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
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
// exit status 1), and standard input stopped by SIGTERM mid-read (a clean
// stop, exit status 0, as for a live capture).
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
		name     string
		wantCode int
		// run runs the capturer against sock, with h its server's handler,
		// and returns its exit status.
		run func(t *testing.T, sock string, h *ipctest.Handler) int
	}{
		{"file ends inside a packet", 1, func(t *testing.T, sock string, _ *ipctest.Handler) int {
			_, _, code := runBin(t, exec.Command(bin, "--read", truncated, "--socket", sock, "-q"))
			return code
		}},
		{"SIGTERM while reading standard input", 0, func(t *testing.T, sock string, h *ipctest.Handler) int {
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
			h, sock := startRecorder(t)
			code := tt.run(t, sock, h)
			ids := h.Instances()
			if code != tt.wantCode || len(ids) != 1 {
				t.Fatalf("exit %d, %d instances; want %d, 1", code, len(ids), tt.wantCode)
			}
			got := h.Instance(ids[0])
			if len(got.Seqs) == 0 || got.Stats.Packets == 0 || len(got.DoneSeqs) != 0 {
				t.Errorf("batches %v, %d packets, done on %v; want batches with packets, none done",
					got.Seqs, got.Stats.Packets, got.DoneSeqs)
			}
		})
	}
}

// TestSocketStream streams a capture into the capturer as
// "tcpdump -U -w - | lightshark-capturer --read - --socket PATH" does,
// through standard input and through a FIFO named by --read, the writer
// keeping its end open: 20 packets, far fewer than a batch, reach the API
// server within a few flush intervals; statistics keep coming while the
// stream is quiet; packets written after the pause arrive too. Then either
// SIGTERM, with the pipe open and idle, stops the capturer at once, or the
// writer closes the stream: either way it exits 0 and its last batch ends
// every flow, with Done only when the stream was read to its end.
func TestSocketStream(t *testing.T) {
	bin := buildCapturer(t)
	const interval = 100 * time.Millisecond
	tests := []struct {
		name string
		// start starts cmd reading a stream it adds to cmd's arguments,
		// and returns the stream's writing end.
		start   func(t *testing.T, cmd *exec.Cmd) *os.File
		sigterm bool // else the writer closes the stream
	}{
		{"standard input, SIGTERM", startStdinStream, true},
		{"standard input, writer closes", startStdinStream, false},
		{"FIFO, SIGTERM", startFIFOStream, true},
		{"FIFO, writer closes", startFIFOStream, false},
	}
	for _, tt := range tests {
		end := "the writer closing the stream"
		if tt.sigterm {
			end = "SIGTERM"
		}
		t.Run(tt.name, func(t *testing.T) {
			h, sock := startRecorder(t)

			cmd := exec.Command(bin, "--socket", sock, "--flush-interval", interval.String(), "-q")
			stderr := &testenv.Buffer{}
			cmd.Stderr = stderr
			w := tt.start(t, cmd)
			defer w.Close()
			exited := watchExit(t, cmd)

			// await waits until the server holds an instance that ok
			// accepts, and returns it.
			await := func(what string, within time.Duration, ok func(ipctest.Instance) bool) ipctest.Instance {
				t.Helper()
				start := time.Now()
				var last ipctest.Instance
				for {
					if ids := h.Instances(); len(ids) == 1 {
						if last = h.Instance(ids[0]); ok(last) {
							t.Logf("%s: after %v", what, time.Since(start).Round(time.Millisecond))
							return last
						}
					}
					if time.Since(start) > within {
						t.Fatalf("%s: not within %v; the server holds %d flows, stats of %d packets, batches %v\nstderr: %s",
							what, within, len(last.Flows), last.Stats.Packets, last.Seqs, stderr.String())
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			write := func(b []byte) {
				t.Helper()
				if _, err := w.Write(b); err != nil {
					t.Fatalf("write to the stream: %v", err)
				}
			}

			write(append(capturetest.PcapHeader(), capturetest.UDPRecords(1000, 20)...))
			in := await("20 packets, the writer waiting", 10*interval, func(in ipctest.Instance) bool {
				return len(in.Flows) == 20 && in.Stats.Packets == 20
			})
			for _, f := range in.Flows {
				if f.PacketsSent+f.PacketsReceived != 1 || f.EndReason != "" {
					t.Errorf("flow %s: %d packets, end reason %q; want 1, active", flowKey(f), f.PacketsSent+f.PacketsReceived, f.EndReason)
				}
			}

			// Nothing comes: batches of statistics still do.
			quiet := len(in.Seqs)
			await("3 batches while the stream is quiet", 10*interval, func(in ipctest.Instance) bool {
				return len(in.Seqs) >= quiet+3
			})

			// After the pause: 5 packets of the first flows, 5 new flows.
			write(append(capturetest.UDPRecords(1015, 5), capturetest.UDPRecords(2000, 5)...))
			await("10 more packets after a pause", 10*interval, func(in ipctest.Instance) bool {
				return len(in.Flows) == 25 && in.Stats.Packets == 30
			})

			// SIGTERM, the pipe open and idle; or the end of the stream.
			start := time.Now()
			if tt.sigterm {
				cmd.Process.Signal(syscall.SIGTERM)
			} else {
				w.Close()
			}
			select {
			case <-exited:
			case <-time.After(2 * time.Second):
				t.Fatalf("no exit within 2 s of %s, the pipe idle\nstderr: %s", end, stderr.String())
			}
			t.Logf("exited %v after %s", time.Since(start).Round(time.Millisecond), end)
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit %d, want 0\nstderr: %s", code, stderr.String())
			}
			in = h.Instance(h.Instances()[0])
			packets, _ := in.Totals()
			if len(in.Flows) != 25 || packets != 30 || in.Stats.Packets != 30 {
				t.Errorf("last: %d flows holding %d packets, stats of %d packets; want 25 holding 30, 30",
					len(in.Flows), packets, in.Stats.Packets)
			}
			// Done says the capture was read to its end: not when a
			// signal stopped it.
			var wantDone []uint64
			if !tt.sigterm {
				wantDone = []uint64{in.LastSeq}
			}
			if !slices.Equal(in.DoneSeqs, wantDone) {
				t.Errorf("done on batches %v of %v, want %v", in.DoneSeqs, in.Seqs, wantDone)
			}
			for _, f := range in.Flows {
				if f.EndReason != record.EndEOF {
					t.Errorf("flow %s: end reason %q, want %q", flowKey(f), f.EndReason, record.EndEOF)
				}
			}
		})
	}
}

// TestSocketStreamStoppedBeforeHeader: SIGTERM while the capturer waits for
// the capture header of a FIFO whose writer has opened it but written
// nothing (tcpdump without -U keeps the header in its buffer until the
// first packets) stops it at once, exit status 0, without a batch.
func TestSocketStreamStoppedBeforeHeader(t *testing.T) {
	bin := buildCapturer(t)
	h, sock := startRecorder(t)

	cmd := exec.Command(bin, "--socket", sock, "-q")
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	// The FIFO's writer opens once the capturer has opened it to read,
	// after its signal handler is set.
	w := startFIFOStream(t, cmd)
	defer w.Close()
	exited := watchExit(t, cmd)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
		t.Fatalf("no exit within 2 s of SIGTERM, no header written\nstderr: %s", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 || len(h.Instances()) != 0 {
		t.Errorf("exit %d, %d instances; want 0, 0\nstderr: %s", code, len(h.Instances()), stderr.String())
	}
}

// startStdinStream starts cmd reading standard input (--read -) from a
// pipe and returns the pipe's writing end.
func startStdinStream(t *testing.T, cmd *exec.Cmd) *os.File {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Args = append(cmd.Args, "--read", "-")
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	return pw
}

// startFIFOStream starts cmd reading a new FIFO (--read PATH) and returns
// the FIFO's writing end, opened once cmd has opened it.
func startFIFOStream(t *testing.T, cmd *exec.Cmd) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "capture.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Args = append(cmd.Args, "--read", path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	return w
}

// watchExit waits for cmd, started, in the background: the channel closes
// when it has exited. At cleanup a process still running is killed.
func watchExit(t *testing.T, cmd *exec.Cmd) <-chan struct{} {
	t.Helper()
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	return exited
}

// startRecorder starts an IPC server on a new socket that records the
// batches it acknowledges, until the test ends.
func startRecorder(t *testing.T) (*ipctest.Handler, string) {
	t.Helper()
	h := &ipctest.Handler{}
	sock := ipctest.SocketPath(t)
	srv := &ipc.Server{Path: sock, Handler: h}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	return h, sock
}
