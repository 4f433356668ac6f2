package capturer

import (
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/capture"
	"github.com/lightshark-dev/lightshark-mini/pkg/capture/capturetest"
	"github.com/lightshark-dev/lightshark-mini/pkg/flow"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// flushed is what the Periodic of TestReadStream saw at one flush.
type flushed struct {
	packets uint64
	active  int
}

// TestReadStream feeds a capture through a pipe that stays open, the way
// "tcpdump -U -w -" feeds standard input: far fewer packets than a batch
// reach the flow table and the flush while the writer waits, the flush
// keeps running while nothing comes, packets written after a pause arrive
// too, and cancelling returns at once with the writer still idle, every
// flow ended. Through an io.Pipe every read may block; an os.Pipe tells
// when one would (FIONREAD). Compressed, the hand-over happens below gzip.
func TestReadStream(t *testing.T) {
	ioPipe := func(t *testing.T) (io.ReadCloser, io.WriteCloser) {
		return io.Pipe()
	}
	osPipe := func(t *testing.T) (io.ReadCloser, io.WriteCloser) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return r, w
	}
	tests := []struct {
		name string
		pipe func(t *testing.T) (io.ReadCloser, io.WriteCloser)
		gzip bool
	}{
		{"io.Pipe", ioPipe, false},
		{"io.Pipe gzip-compressed", ioPipe, true},
		{"os.Pipe", osPipe, false},
		{"os.Pipe gzip-compressed", osPipe, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, pw := tt.pipe(t)
			defer pw.Close()
			// The writer: each chunk goes whole into the pipe (and is
			// flushed through gzip), then the pipe stays open.
			chunks := make(chan []byte)
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				var w io.Writer = pw
				var gz *gzip.Writer
				if tt.gzip {
					gz = gzip.NewWriter(pw)
					w = gz
				}
				for c := range chunks {
					if _, err := w.Write(c); err != nil {
						return
					}
					if gz != nil {
						if err := gz.Flush(); err != nil {
							return
						}
					}
				}
			}()
			defer func() {
				close(chunks)
				<-wrote
			}()

			chunks <- capturetest.PcapHeader()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			s, err := OpenStream(ctx, func() (io.ReadCloser, error) { return in, nil })
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			table := flow.NewTable(flow.DefaultMaxFlows)
			var ended []flow.Flow
			table.OnEnd = func(f *flow.Flow) { ended = append(ended, *f) }
			p := NewPipeline(table)
			flushes := make(chan flushed, 1000)
			pr := &Periodic{
				Interval: 20 * time.Millisecond,
				Flush: func() {
					flushes <- flushed{p.Stats().Packets, table.Len()}
				},
			}
			runCtx, stop := context.WithCancel(t.Context())
			defer stop()
			done := make(chan error, 1)
			go func() { done <- ReadStream(runCtx, s, p, pr) }()

			// waitFlush waits for a flush that saw want.
			waitFlush := func(what string, want flushed) {
				t.Helper()
				deadline := time.After(2 * time.Second)
				var last flushed
				for {
					select {
					case f := <-flushes:
						if f == want {
							return
						}
						last = f
					case <-deadline:
						t.Fatalf("%s: last flush saw %d packets in %d flows, want %d in %d",
							what, last.packets, last.active, want.packets, want.active)
					}
				}
			}
			chunks <- capturetest.UDPRecords(1000, 20)
			waitFlush("20 packets, writer waiting", flushed{20, 20})

			// Nothing comes: the flush still runs on time.
			for i := range 3 {
				select {
				case <-flushes:
				case <-time.After(time.Second):
					t.Fatalf("flush %d of a quiet stream: none within 1 s (interval 20 ms)", i+1)
				}
			}

			// After the pause: 5 packets of the first flows, 5 new flows.
			chunks <- append(capturetest.UDPRecords(1015, 5), capturetest.UDPRecords(2000, 5)...)
			waitFlush("10 more packets after a pause", flushed{30, 25})

			// The writer is idle and the pipe open: cancelling returns
			// at once all the same.
			start := time.Now()
			stop()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("got %v, want nil: a stopped stream is not an error", err)
				}
			case <-time.After(time.Second):
				t.Fatal("no return within 1 s of cancelling, with the pipe open and idle")
			}
			t.Logf("returned %v after cancelling", time.Since(start).Round(time.Millisecond))
			var packets uint64
			for _, f := range ended {
				packets += f.Packets[0] + f.Packets[1]
				if f.EndReason != record.EndEOF {
					t.Errorf("flow %d ended %q, want %q", f.SrcPort, f.EndReason, record.EndEOF)
				}
			}
			if len(ended) != 25 || packets != 30 {
				t.Errorf("got %d flows ended holding %d packets, want 25 holding 30", len(ended), packets)
			}
		})
	}
}

// TestReadStream_MatchesFile checks that a stream, whose reading goroutine
// hands over partial batches (here before every read: an io.Pipe cannot
// tell whether a read would wait, and each write of 1000 bytes ends
// inside a record), gives the flows, statistics and samples of ReadFile
// on the same capture.
func TestReadStream_MatchesFile(t *testing.T) {
	shared := testenv.SharedDir(t)
	files, err := filepath.Glob(filepath.Join(shared, "pcaps", "conformance", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance captures: %v", err)
	}
	type result struct {
		flows   []flow.Flow
		samples []Sample
		stats   any
	}
	run := func(t *testing.T, path string, stream, sample bool) result {
		t.Helper()
		var r result
		table := flow.NewTable(flow.DefaultMaxFlows)
		table.OnEnd = func(f *flow.Flow) { r.flows = append(r.flows, *f) }
		p := NewPipeline(table)
		if sample {
			p.SampleRate = 3
			p.OnSample = func(s *Sample) { r.samples = append(r.samples, *s) }
		}
		if !stream {
			src, err := capture.OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if err := ReadFile(t.Context(), src, p, nil); err != nil {
				t.Fatalf("read: %v", err)
			}
		} else {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			in, w := io.Pipe()
			go func() {
				for off := 0; off < len(data); off += 1000 {
					if _, err := w.Write(data[off:min(off+1000, len(data))]); err != nil {
						return
					}
				}
				w.Close()
			}()
			s, err := OpenStream(t.Context(), func() (io.ReadCloser, error) { return in, nil })
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := ReadStream(t.Context(), s, p, nil); err != nil {
				t.Fatalf("read: %v", err)
			}
		}
		r.stats = p.Stats()
		return r
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			for _, sample := range []bool{false, true} {
				want := run(t, path, false, sample)
				got := run(t, path, true, sample)
				if !reflect.DeepEqual(got.flows, want.flows) {
					t.Errorf("sampling %v: got %d flows, want %d (or they differ)", sample, len(got.flows), len(want.flows))
				}
				if !reflect.DeepEqual(got.stats, want.stats) {
					t.Errorf("sampling %v: got stats %+v, want %+v", sample, got.stats, want.stats)
				}
				if !reflect.DeepEqual(got.samples, want.samples) {
					t.Errorf("sampling %v: got %d samples, want %d (or they differ)", sample, len(got.samples), len(want.samples))
				}
			}
		})
	}
}
