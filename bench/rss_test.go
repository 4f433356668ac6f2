package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkRSS measures the capturer's resident memory holding exactly 1
// (the baseline), 10,000 and 100,000 concurrent flows. Each capture is fed
// to --read - through a pipe; once the capturer has consumed all of it
// (every flow is live in its table: no EOF yet), VmHWM and VmRSS are read
// from /proc/PID/status. Then the pipe is closed, the capturer exports
// every flow as JSONL, and the VmHWM of the whole run is reported too.
// --max-flows is N, large enough for every flow.
func BenchmarkRSS(b *testing.B) {
	bin := capturerBin(b)
	for range b.N {
		base := rssRun(b, bin, concurrentFile(b, 1), 1)
		r10k := rssRun(b, bin, concurrentFile(b, 10_000), 10_000)
		r100k := rssRun(b, bin, concurrentFile(b, 100_000), 100_000)
		per10k := float64(r10k.liveHWM-base.liveHWM) / 10_000
		marginal := float64(r100k.liveHWM-r10k.liveHWM) / 90_000
		sec := secMemory
		for _, r := range []struct {
			n int
			r rssResult
		}{{1, base}, {10_000, r10k}, {100_000, r100k}} {
			target := ""
			if r.n == 10_000 {
				target = fmt.Sprintf("≤ %s", mib(targetRSS10k))
			}
			results.add(sec, fmt.Sprintf("capturer peak RSS (VmHWM) holding %d live flow(s), before EOF", r.n),
				fmt.Sprintf("%s (VmRSS %s)", mib(r.r.liveHWM), mib(r.r.liveRSS)), target, r.r.liveHWM <= targetRSS10k)
			results.add(sec, fmt.Sprintf("capturer peak RSS (VmHWM), whole run incl. exporting the %d flow(s) as JSONL at EOF", r.n),
				mib(r.r.exitHWM), target, r.r.exitHWM <= targetRSS10k)
		}
		results.add(sec, "RSS per flow at 10k flows: (VmHWM(10k) − VmHWM(1)) / 10k", fmt.Sprintf("%.0f B", per10k),
			fmt.Sprintf("≤ %d B", targetRSSPerFlow), per10k <= targetRSSPerFlow)
		results.add(sec, "RSS per flow from 10k to 100k: (VmHWM(100k) − VmHWM(10k)) / 90k", fmt.Sprintf("%.0f B", marginal),
			fmt.Sprintf("≤ %d B", targetRSSPerFlow), marginal <= targetRSSPerFlow)
		b.ReportMetric(float64(r10k.liveHWM)/(1<<20), "MiB-RSS-10k")
		b.ReportMetric(float64(r100k.liveHWM)/(1<<20), "MiB-RSS-100k")
		b.ReportMetric(marginal, "RSS-B/flow")
	}
}

type rssResult struct {
	liveHWM, liveRSS int64 // with every flow in the table
	exitHWM          int64 // over the whole run
	stats            capStats
}

func rssRun(b *testing.B, bin string, f genFile, flows int) rssResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer pw.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	cmd := exec.CommandContext(ctx, bin, "--read", "-", "--output", "jsonl", "--stats", "-q", "--max-flows", strconv.Itoa(flows))
	cmd.Stdin, cmd.Stdout = pr, devnull
	p := startProc(b, cmd, nil)
	pr.Close()

	in, err := os.Open(f.Path)
	if err != nil {
		b.Fatal(err)
	}
	_, err = io.Copy(pw, in)
	in.Close()
	if err != nil {
		b.Fatalf("feed the capturer: %v", err)
	}
	waitConsumed(b, cmd.Process.Pid, pw)
	var r rssResult
	r.liveHWM = procStatus(cmd.Process.Pid, "VmHWM")
	r.liveRSS = procStatus(cmd.Process.Pid, "VmRSS")
	pw.Close()
	m := p.wait()
	if m.Err != nil {
		b.Fatalf("capturer: %v\n%s", m.Err, m.Stderr)
	}
	r.exitHWM = max(m.HWM, r.liveHWM)
	if r.stats, err = parseCapStats(m.Stderr); err != nil {
		b.Fatal(err)
	}
	if r.stats.Flows != uint64(flows) || r.stats.Evictions != 0 || r.stats.Packets != f.Stats.Packets {
		b.Errorf("%d flows: the capturer saw %d packets (file: %d), %d flows, %d evictions", flows, r.stats.Packets, f.Stats.Packets, r.stats.Flows, r.stats.Evictions)
	}
	return r
}

// waitConsumed waits until the pipe w feeds is empty and the process
// reading it sleeps without using CPU (it has processed its last read).
func waitConsumed(tb testing.TB, pid int, w *os.File) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := unix.IoctlGetInt(int(w.Fd()), unix.TIOCINQ) // FIONREAD
		if err != nil {
			tb.Fatalf("FIONREAD on the pipe: %v", err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the capturer left %d bytes unread", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var last time.Duration = -1
	for still := 0; still < 3; {
		cpu, state := procCPU(pid)
		if state == "S" && cpu == last {
			still++
		} else {
			still = 0
		}
		last = cpu
		if time.Now().After(deadline) {
			tb.Fatalf("the capturer did not go idle")
		}
		time.Sleep(30 * time.Millisecond)
	}
}
