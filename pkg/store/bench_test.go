package store

import (
	"testing"
	"time"
)

// BenchmarkApplyBatch measures ingest with realistic batches: 1000 flow
// updates (10 of them final records, replaced by new flows) and 100 packet
// samples per batch, over a population of 20,000 active flows, so most
// updates hit an existing row. It reports flow records and samples per
// second, and rows/s (both together).
func BenchmarkApplyBatch(b *testing.B) {
	for _, bc := range []struct {
		name   string
		window time.Duration
	}{
		{"windows=off", 0},
		{"windows=60s", time.Minute},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := openTest(b, Options{AggregationWindow: bc.window, Retention: -1, MaxSize: -1})
			s := newSim(1, 20000)
			// Warm up: every active flow has a row, as in steady state.
			for range 20 {
				mustApply(b, db, s.cap, s.batch(1000, 10, 100))
			}
			batches := make([]*Batch, 0, 64)
			var flows, samples int
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%64 == 0 {
					b.StopTimer()
					batches = batches[:0]
					for range 64 {
						batches = append(batches, s.batch(1000, 10, 100))
					}
					b.StartTimer()
				}
				bt := batches[i%64]
				mustApply(b, db, s.cap, bt)
				flows += len(bt.Flows) + len(bt.Ended)
				samples += len(bt.Samples)
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(flows)/sec, "flows/s")
			b.ReportMetric(float64(samples)/sec, "samples/s")
			b.ReportMetric(float64(flows+samples)/sec, "rows/s")
		})
	}
}

// BenchmarkApplyBatch_Samples measures packet records alone (--sample-rate
// 1): batches of 2000 samples.
func BenchmarkApplyBatch_Samples(b *testing.B) {
	db := openTest(b, Options{Retention: -1, MaxSize: -1})
	s := newSim(2, 1000)
	var samples int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bt := s.batch(0, 0, 2000)
		b.StartTimer()
		mustApply(b, db, s.cap, bt)
		samples += len(bt.Samples)
	}
	b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
}
