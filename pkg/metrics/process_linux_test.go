package metrics

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procStatus returns a "NAME: N kB" line of /proc/self/status in bytes,
// read independently of the code under test.
func procStatus(t testing.TB, name string) float64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), name+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			t.Fatalf("/proc/self/status %s: %v", name, err)
		}
		return kb * 1024
	}
	t.Fatalf("/proc/self/status: no %s line", name)
	return 0
}

// cpuTime returns the CPU time of the process from getrusage(2).
func cpuTime(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRegistry_RegisterProcess_linux checks the process_* values against
// what the kernel says through other files and system calls, and that they
// follow what the test does. It opens files and burns CPU, so it is not
// parallel.
func TestRegistry_RegisterProcess_linux(t *testing.T) {
	r := NewRegistry()
	r.RegisterProcess()

	t.Run("memory", func(t *testing.T) {
		// Both change between reads: bracket the scrape, and allow 25 %
		// or 4 MiB.
		lo := procStatus(t, "VmRSS")
		got := value(t, r, "process_resident_memory_bytes")
		hi := procStatus(t, "VmRSS")
		slack := math.Max(0.25*max(lo, hi), 4<<20)
		if got < min(lo, hi)-slack || got > max(lo, hi)+slack {
			t.Errorf("process_resident_memory_bytes: got %.0f, want within %.0f of VmRSS (%.0f, then %.0f)", got, slack, lo, hi)
		}
		lo = procStatus(t, "VmSize")
		got = value(t, r, "process_virtual_memory_bytes")
		hi = procStatus(t, "VmSize")
		slack = 0.25 * max(lo, hi)
		if got < min(lo, hi)-slack || got > max(lo, hi)+slack {
			t.Errorf("process_virtual_memory_bytes: got %.0f, want within %.0f of VmSize (%.0f, then %.0f)", got, slack, lo, hi)
		}
	})

	t.Run("fds", func(t *testing.T) {
		const n = 10
		dir := t.TempDir()
		before := value(t, r, "process_open_fds")
		var files []*os.File
		for i := range n {
			// Regular files: the runtime's poller (and its own
			// descriptors) stays out of it.
			f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		if got := value(t, r, "process_open_fds"); got != before+n {
			t.Errorf("process_open_fds with %d files open: got %v, want %v", n, got, before+n)
		}
		for _, f := range files {
			f.Close()
		}
		if got := value(t, r, "process_open_fds"); got != before {
			t.Errorf("process_open_fds after closing them: got %v, want %v", got, before)
		}
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		// ReadDir's own descriptor is listed.
		if got := value(t, r, "process_open_fds"); got != float64(len(ents)-1) {
			t.Errorf("process_open_fds: got %v, want %d (the entries of /proc/self/fd but ReadDir's own)", got, len(ents)-1)
		}

		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		limits, err := os.ReadFile("/proc/self/limits")
		if err != nil {
			t.Fatal(err)
		}
		var soft string
		for line := range strings.Lines(string(limits)) {
			if v, ok := strings.CutPrefix(line, "Max open files"); ok {
				soft = strings.Fields(v)[0]
			}
		}
		if got := value(t, r, "process_max_fds"); strconv.FormatFloat(got, 'f', -1, 64) != soft {
			t.Errorf("process_max_fds: got %v, want %s (Max open files in /proc/self/limits)", got, soft)
		}
	})

	t.Run("cpu", func(t *testing.T) {
		before := value(t, r, "process_cpu_seconds_total")
		// Burn 300 ms of CPU, as getrusage counts it, scraping as it goes:
		// the counter never goes down.
		start := cpuTime(t)
		deadline := time.Now().Add(30 * time.Second)
		prev, x := before, 0
		for cpuTime(t)-start < 300*time.Millisecond {
			if time.Now().After(deadline) {
				t.Fatal("could not burn 300 ms of CPU in 30 s")
			}
			for i := range 1_000_000 {
				x ^= i * i
			}
			got := value(t, r, "process_cpu_seconds_total")
			if got < prev {
				t.Fatalf("process_cpu_seconds_total went down: %v, then %v", prev, got)
			}
			prev = got
		}
		_ = x
		// Clock ticks are 10 ms, and the kernel splits the time it counts
		// with another method: allow a third.
		if got := value(t, r, "process_cpu_seconds_total"); got < before+0.2 {
			t.Errorf("process_cpu_seconds_total after burning 300 ms: got %v, want at least %v", got, before+0.2)
		}
	})

	t.Run("start", func(t *testing.T) {
		// The test binary started a moment ago; this tells a start time
		// in Unix seconds from one in seconds since boot.
		now := float64(time.Now().UnixNano()) / 1e9
		got := value(t, r, "process_start_time_seconds")
		if got > now+1 || got < now-3600 {
			t.Errorf("process_start_time_seconds: got %v, want within the last hour (now %v)", got, now)
		}
		if again := value(t, r, "process_start_time_seconds"); again != got {
			t.Errorf("process_start_time_seconds: got %v, then %v; want it constant", got, again)
		}
	})
}
