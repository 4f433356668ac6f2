package store

import (
	"net/netip"
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

// BenchmarkApplyBatch_Large measures flow updates in the shape of the API
// server's ingest benchmark (bench.BenchmarkAPIIngest): 10,000 records per
// batch (1 % final, replaced by new flows) over 50,000 active flows.
func BenchmarkApplyBatch_Large(b *testing.B) {
	db := openTest(b, Options{Retention: -1, MaxSize: -1})
	s := newSim(1, 50000)
	for range 6 {
		mustApply(b, db, s.cap, s.batch(10000, 100, 100))
	}
	var flows int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bt := s.batch(10000, 100, 0)
		b.StartTimer()
		mustApply(b, db, s.cap, bt)
		flows += len(bt.Flows) + len(bt.Ended)
	}
	b.ReportMetric(float64(flows)/b.Elapsed().Seconds(), "flows/s")
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

// BenchmarkFlows measures one page (100 flows) of /api/flows shapes over
// 100,000 flows, where the watched container's own address is in 90 % of
// them (the skew that makes an address filter common) and one port is rare.
// It reports the page latency; the planner statistics are refreshed first,
// as the background retention does.
func BenchmarkFlows(b *testing.B) {
	db := openTest(b, Options{Retention: -1, MaxSize: -1})
	s := newSim(3, 20000)
	own := "10.9.9.9"
	for i := range 40 {
		bt := s.batch(2500, 2000, 0) // 2000 new flows per batch
		for j := range bt.Flows {
			f := &bt.Flows[j]
			if (i+j)%10 != 0 {
				f.DstIP = own
			}
			if (i*2500+j)%5000 == 1 {
				f.SrcPort = 31337
			}
		}
		mustApply(b, db, s.cap, bt)
	}
	if _, err := db.w.Exec("PRAGMA optimize"); err != nil {
		b.Fatal(err)
	}
	_, deep, err := db.Flows(b.Context(), FlowQuery{Limit: MaxLimit})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		q    FlowQuery
	}{
		{"default", FlowQuery{}},
		{"second_page", FlowQuery{Limit: DefaultLimit, Cursor: deep}},
		{"order=bytes", FlowQuery{Order: OrderBytes}},
		{"ip=own", FlowQuery{IP: netip.MustParseAddr(own)}},
		{"ip=rare", FlowQuery{IP: netip.MustParseAddr("192.168.1.7")}},
		{"ip=own,port=rare", FlowQuery{IP: netip.MustParseAddr(own), Port: 31337}},
		{"cidr=10/8", FlowQuery{CIDR: netip.MustParsePrefix("10.0.0.0/8")}},
		{"cidr=v6/64", FlowQuery{CIDR: netip.MustParsePrefix("2001:db8:0:2::/64")}},
		{"proto=sctp", FlowQuery{Proto: "sctp"}},
		{"state=REJ,order=packets", FlowQuery{State: "REJ", Order: OrderPackets}},
		{"since=last10s", FlowQuery{Since: s.now.Add(-10 * time.Second)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := db.Flows(b.Context(), bc.q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
