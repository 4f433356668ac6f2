package bench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	_ "modernc.org/sqlite" // to count the committed rows

	"github.com/lightshark-dev/lightshark-mini/pkg/apiserver"
)

// BenchmarkAPIIngest measures sustained ingest through the real IPC socket
// into the real lightshark-apiserver and its SQLite file (its defaults:
// --max-db-size 256MiB, 24 h retention, so the size bound's retention runs
// when the file fills). An ipc.Client, as the capturer uses, sends batches
// back to back with two in flight (the server always has the next one
// waiting), in two shapes, LIGHTSHARK_BENCH_API_SECONDS (default 10) each:
//
//   - flow updates: 10,000 records per batch over a rotating set of 50,000
//     active flows (so almost every record updates a stored row), one in
//     100 a final record replaced by a new flow, and 100 packet samples;
//   - packet records: 4,096 samples per batch (the capturer's per-batch
//     maximum) and 200 flow updates.
//
// Rates are of committed rows: records of batches the server acknowledged
// (it acknowledges after the commit), over the measured time, after a
// warm-up that stores every active flow. The rows are counted in the file
// afterwards, and the client must have dropped nothing.
func BenchmarkAPIIngest(b *testing.B) {
	seconds := envInt(b, "LIGHTSHARK_BENCH_API_SECONDS", defaultAPISeconds)
	for range b.N {
		db := filepath.Join(b.TempDir(), "traffic.db")
		srv := startAPIServer(b, db)
		load := startIngest(b, srv.socket)
		tr := newAPITraffic(41, 50_000, time.Now().Add(-time.Hour))

		// Warm-up: every active flow gets its row.
		for range 5 {
			load.send(b, tr.batch(10_000, 100, 100, 100*time.Millisecond))
			load.waitUnacked(b, 1, time.Minute)
		}
		load.waitUnacked(b, 0, time.Minute)

		type phase struct {
			name                     string
			flows, endEvery, samples int
		}
		var rates [2][2]float64 // [phase]{flows/s, samples/s}
		for pi, ph := range []phase{
			{"flow updates", 10_000, 100, 100},
			{"packet records", 200, 100, 4096},
		} {
			f0, s0, _ := load.progress()
			cpu0, _ := procCPU(srv.p.cmd.Process.Pid)
			start := time.Now()
			for time.Since(start) < time.Duration(seconds)*time.Second {
				load.send(b, tr.batch(ph.flows, ph.endEvery, ph.samples, 100*time.Millisecond))
				load.waitUnacked(b, 2, time.Minute)
			}
			// Count only what was committed within the measured time.
			f1, s1, _ := load.progress()
			el := time.Since(start)
			cpu1, _ := procCPU(srv.p.cmd.Process.Pid)
			rates[pi] = [2]float64{float64(f1-f0) / el.Seconds(), float64(s1-s0) / el.Seconds()}
			load.waitUnacked(b, 0, time.Minute)
			// The server's CPU per record is steadier than the rate on a
			// machine shared with other work.
			b.Logf("%s: %.0f flow records/s, %.0f samples/s over %v; server CPU %.1f µs per record; peak RSS so far: anonymous %s, file-backed %s",
				ph.name, rates[pi][0], rates[pi][1], el.Round(time.Millisecond),
				float64((cpu1-cpu0).Microseconds())/float64(max(f1-f0+s1-s0, 1)), mib(srv.anon.Load()), mib(srv.file.Load()))
		}
		load.close(b)
		m := srv.stop(b)

		// The file holds what was acknowledged (retention may have taken
		// the oldest samples when the size bound was reached).
		flowsSent, samplesSent := load.flows, load.samples
		nFlows, nSamples, lastSeq := countRows(b, db)
		if lastSeq != load.c.Stats().AckedSeq {
			b.Errorf("last seq in the file %d, acknowledged %d", lastSeq, load.c.Stats().AckedSeq)
		}
		b.Logf("sent %d flow records, %d samples; the file holds %d flows, %d samples", flowsSent, samplesSent, nFlows, nSamples)

		results.add(secAPI, "ingest, flow updates (10k per batch, 50k active flows, 1 % ended, 100 samples): flow records committed/s",
			fmt.Sprintf("%.0f/s (+ %.0f samples/s)", rates[0][0], rates[0][1]),
			fmt.Sprintf("≥ %d/s", targetIngestFlows), rates[0][0] >= targetIngestFlows)
		results.add(secAPI, "ingest, packet records (4,096 samples + 200 flow updates per batch): packet records committed/s",
			fmt.Sprintf("%.0f/s (+ %.0f flow records/s)", rates[1][1], rates[1][0]),
			fmt.Sprintf("≥ %d/s", targetIngestSamples), rates[1][1] >= targetIngestSamples)
		srv.rssRow("during the ingest benchmark")
		results.note(secAPI, "Ingest: an ipc.Client in the benchmark process sends over the Unix socket, two batches in flight; "+
			"rates count the records of acknowledged (committed) batches, %d s per shape, after a warm-up that stores all 50k active flows; "+
			"the server's CPU: %s user + %s system over the run.", seconds, secs(m.User), secs(m.Sys))
		b.ReportMetric(rates[0][0], "flows/s")
		b.ReportMetric(rates[1][1], "samples/s")
		b.ReportMetric(float64(m.HWM)/(1<<20), "MiB-RSS")
	}
}

// countRows opens the database read-only and counts flows and packet
// samples, and returns the highest seq applied.
func countRows(tb testing.TB, path string) (flows, samples int64, lastSeq uint64) {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow("SELECT (SELECT COUNT(*) FROM flows), (SELECT COUNT(*) FROM packets), (SELECT COALESCE(MAX(last_seq), 0) FROM applied_batches)").
		Scan(&flows, &samples, &lastSeq); err != nil {
		tb.Fatal(err)
	}
	return flows, samples, lastSeq
}

// BenchmarkAPIIngestInProcess runs the flow-update shape of
// BenchmarkAPIIngest against the API server as a library in this process
// (pkg/apiserver, the same wiring as the binary), for -cpuprofile and
// -memprofile, when LIGHTSHARK_BENCH_API_INPROCESS=1 (make bench skips
// it). It reports no results rows; LIGHTSHARK_BENCH_API_SHAPE=samples runs
// the packet-records shape. To profile the real binary instead, point
// LIGHTSHARK_BENCH_APISERVER at a build that writes a profile.
func BenchmarkAPIIngestInProcess(b *testing.B) {
	if os.Getenv("LIGHTSHARK_BENCH_API_INPROCESS") != "1" {
		b.Skip("profiling aid: set LIGHTSHARK_BENCH_API_INPROCESS=1")
	}
	seconds := envInt(b, "LIGHTSHARK_BENCH_API_SECONDS", defaultAPISeconds)
	for range b.N {
		dir := b.TempDir()
		srv, err := apiserver.Start(b.Context(), apiserver.Config{Socket: filepath.Join(dir, "ipc.sock"),
			DBPath: filepath.Join(dir, "traffic.db"), Listen: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}
		load := startIngest(b, filepath.Join(dir, "ipc.sock"))
		tr := newAPITraffic(41, 50_000, time.Now().Add(-time.Hour))
		for range 5 {
			load.send(b, tr.batch(10_000, 100, 100, 100*time.Millisecond))
			load.waitUnacked(b, 1, time.Minute)
		}
		load.waitUnacked(b, 0, time.Minute)
		shape := os.Getenv("LIGHTSHARK_BENCH_API_SHAPE") // "samples" for the packet-records shape
		nf, ns := 10_000, 100
		if shape == "samples" {
			nf, ns = 200, 4096
		}
		b.ResetTimer()
		f0, s0, _ := load.progress()
		start := time.Now()
		for time.Since(start) < time.Duration(seconds)*time.Second {
			load.send(b, tr.batch(nf, 100, ns, 100*time.Millisecond))
			load.waitUnacked(b, 2, time.Minute)
		}
		f1, s1, _ := load.progress()
		el := time.Since(start)
		b.StopTimer()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.Logf("%.0f flow records/s, %.0f samples/s; heap in use %s, Go sys %s, GC cycles %d",
			float64(f1-f0)/el.Seconds(), float64(s1-s0)/el.Seconds(), mib(int64(ms.HeapInuse)), mib(int64(ms.Sys)), ms.NumGC)
		load.close(b)
		if err := srv.Close(context.Background()); err != nil {
			b.Error(err)
		}
	}
}
