package metrics

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// processFamilies are the families RegisterProcess writes, with their
// types as Prometheus' parser reads them. The process_* ones have samples
// on Linux only.
var processFamilies = map[string]string{
	"process_cpu_seconds_total":          "COUNTER",
	"process_resident_memory_bytes":      "GAUGE",
	"process_virtual_memory_bytes":       "GAUGE",
	"process_open_fds":                   "GAUGE",
	"process_max_fds":                    "GAUGE",
	"process_start_time_seconds":         "GAUGE",
	"go_goroutines":                      "GAUGE",
	"go_threads":                         "GAUGE",
	"go_info":                            "GAUGE",
	"go_memstats_alloc_bytes":            "GAUGE",
	"go_memstats_sys_bytes":              "GAUGE",
	"go_gc_cycles_total_gc_cycles_total": "COUNTER",
	"go_gc_gogc_percent":                 "GAUGE",
	"go_gc_gomemlimit_bytes":             "GAUGE",
	"go_sched_gomaxprocs_threads":        "GAUGE",
}

// scrapeText writes r and parses it with Prometheus' parser.
func scrapeText(t testing.TB, r *Registry) map[string][]parsed {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	return parse(t, buf.String())
}

// value scrapes r and returns the one sample of family name.
func value(t testing.TB, r *Registry, name string) float64 {
	t.Helper()
	s := scrapeText(t, r)[name]
	if len(s) != 1 {
		t.Fatalf("%s: got %d samples, want 1", name, len(s))
	}
	return s[0].value
}

// TestRegistry_RegisterProcess checks the families and the Go runtime's
// values against what the runtime says, after changing them. It changes
// process-wide settings (GOGC, the memory limit), so it is not parallel.
func TestRegistry_RegisterProcess(t *testing.T) {
	r := NewRegistry()
	r.RegisterProcess()

	t.Run("families", func(t *testing.T) {
		fams := scrapeText(t, r)
		for name, typ := range processFamilies {
			s, ok := fams[name]
			if !ok {
				if runtime.GOOS != "linux" && strings.HasPrefix(name, "process_") {
					continue // registered without samples
				}
				t.Errorf("%s: missing", name)
				continue
			}
			if len(s) != 1 || s[0].typ != typ {
				t.Errorf("%s: got %d samples of type %s, want 1 of %s", name, len(s), s[0].typ, typ)
			}
			if s[0].value < 0 {
				t.Errorf("%s: got %v, want a value >= 0", name, s[0].value)
			}
		}
		if got := fams["go_info"][0].labels; len(got) != 1 || got["version"] != runtime.Version() {
			t.Errorf("go_info labels: got %v, want version=%s", got, runtime.Version())
		}
		if got := fams["go_info"][0].value; got != 1 {
			t.Errorf("go_info: got %v, want 1", got)
		}
	})

	t.Run("settings", func(t *testing.T) {
		limit := debug.SetMemoryLimit(-1)
		if got := value(t, r, "go_gc_gomemlimit_bytes"); got != float64(limit) {
			t.Errorf("go_gc_gomemlimit_bytes: got %v, want %d (debug.SetMemoryLimit(-1))", got, limit)
		}
		debug.SetMemoryLimit(3 << 40)
		t.Cleanup(func() { debug.SetMemoryLimit(limit) })
		if got := value(t, r, "go_gc_gomemlimit_bytes"); got != 3<<40 {
			t.Errorf("go_gc_gomemlimit_bytes after SetMemoryLimit(3 TiB): got %v, want %d", got, int64(3<<40))
		}

		old := debug.SetGCPercent(250)
		t.Cleanup(func() { debug.SetGCPercent(old) })
		if got := value(t, r, "go_gc_gogc_percent"); got != 250 {
			t.Errorf("go_gc_gogc_percent after SetGCPercent(250): got %v, want 250", got)
		}

		if got, want := value(t, r, "go_sched_gomaxprocs_threads"), runtime.GOMAXPROCS(0); got != float64(want) {
			t.Errorf("go_sched_gomaxprocs_threads: got %v, want %d", got, want)
		}
		if got := value(t, r, "go_threads"); got < 1 {
			t.Errorf("go_threads: got %v, want at least 1", got)
		}
	})

	t.Run("goroutines", func(t *testing.T) {
		const n = 100
		before := value(t, r, "go_goroutines")
		var started, exited sync.WaitGroup
		stop := make(chan struct{})
		for range n {
			started.Add(1)
			exited.Add(1)
			go func() {
				defer exited.Done()
				started.Done()
				<-stop
			}()
		}
		started.Wait()
		// A few goroutines of the runtime, of the testing package or of an
		// earlier test may come and go meanwhile.
		if got := value(t, r, "go_goroutines"); got < before+n-5 || got > before+n+5 {
			t.Errorf("go_goroutines with %d more: got %v, want %v ± 5", n, got, before+n)
		}
		close(stop)
		exited.Wait()
		// A goroutine that ran its defers is counted until it is gone.
		deadline := time.Now().Add(5 * time.Second)
		for value(t, r, "go_goroutines") > before {
			if time.Now().After(deadline) {
				t.Fatalf("go_goroutines after they exited: got %v, want about %v", value(t, r, "go_goroutines"), before)
			}
			runtime.Gosched()
		}
	})

	t.Run("gc", func(t *testing.T) {
		before := value(t, r, "go_gc_cycles_total_gc_cycles_total")
		runtime.GC()
		runtime.GC()
		if got := value(t, r, "go_gc_cycles_total_gc_cycles_total"); got < before+2 {
			t.Errorf("go_gc_cycles_total_gc_cycles_total after two runtime.GC(): got %v, want at least %v", got, before+2)
		}
	})

	t.Run("heap", func(t *testing.T) {
		runtime.GC()
		before := value(t, r, "go_memstats_alloc_bytes")
		const size = 64 << 20
		buf := make([]byte, size)
		for i := 0; i < size; i += 4096 {
			buf[i] = 1
		}
		alloc := value(t, r, "go_memstats_alloc_bytes")
		sys := value(t, r, "go_memstats_sys_bytes")
		runtime.KeepAlive(buf)
		// Other objects die meanwhile: allow 1 MiB.
		if alloc < before+size-1<<20 {
			t.Errorf("go_memstats_alloc_bytes holding 64 MiB more: got %v, want at least %v", alloc, before+size-1<<20)
		}
		if sys < alloc {
			t.Errorf("go_memstats_sys_bytes: got %v, want at least go_memstats_alloc_bytes (%v)", sys, alloc)
		}
	})
}

// TestRegistry_RegisterProcess_twice: the names are taken once.
func TestRegistry_RegisterProcess_twice(t *testing.T) {
	r := NewRegistry()
	r.RegisterProcess()
	defer func() {
		if recover() == nil {
			t.Error("second RegisterProcess: no panic, want one (names registered twice)")
		}
	}()
	r.RegisterProcess()
}
