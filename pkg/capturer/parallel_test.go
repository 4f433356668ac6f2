package capturer

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/lightshark-dev/lightshark-mini/pkg/capture"
	"github.com/lightshark-dev/lightshark-mini/pkg/flow"
	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// TestReadFile_MatchesOneGoroutine checks that the two-goroutine ReadFile
// (packets handed over as flow.Summary, fragments and sampled packets
// whole) gives the flows, statistics and samples of Pipeline.Packet called
// frame by frame.
func TestReadFile_MatchesOneGoroutine(t *testing.T) {
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
	run := func(t *testing.T, path string, parallel, sample bool) result {
		t.Helper()
		src, err := capture.OpenFile(path)
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		defer src.Close()
		var r result
		table := flow.NewTable(flow.DefaultMaxFlows)
		table.OnEnd = func(f *flow.Flow) { r.flows = append(r.flows, *f) }
		p := NewPipeline(table)
		if sample {
			p.OnSample = func(s *Sample) { r.samples = append(r.samples, *s) }
		}
		if parallel {
			if err := ReadFile(context.Background(), src, p, nil); err != nil {
				t.Fatalf("read: %v", err)
			}
		} else {
			for {
				data, info, err := src.ReadPacket()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				p.Packet(data, &info)
			}
			table.Flush()
		}
		r.stats = p.Stats()
		return r
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want := run(t, path, false, true)
			for _, sample := range []bool{false, true} {
				got := run(t, path, true, sample)
				if !reflect.DeepEqual(got.flows, want.flows) {
					t.Errorf("sampling %v: got %d flows, want %d (or they differ)", sample, len(got.flows), len(want.flows))
				}
				if !reflect.DeepEqual(got.stats, want.stats) {
					t.Errorf("sampling %v: got stats %+v, want %+v", sample, got.stats, want.stats)
				}
				if sample && !reflect.DeepEqual(got.samples, want.samples) {
					t.Errorf("got %d samples, want %d (or they differ)", len(got.samples), len(want.samples))
				}
			}
		})
	}
}
