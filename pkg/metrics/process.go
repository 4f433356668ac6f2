package metrics

import (
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
)

// RegisterProcess registers the families that describe the process itself,
// under the names, types and meanings of Prometheus' Go client
// (client_golang's process and Go collectors), so that dashboards and alerts
// written for any Go service work unchanged:
//
//   - process_cpu_seconds_total (counter), process_resident_memory_bytes,
//     process_virtual_memory_bytes, process_open_fds, process_max_fds and
//     process_start_time_seconds, read from /proc/self on Linux. Elsewhere
//     these families are registered without samples.
//   - go_goroutines, go_threads, go_info{version}, go_memstats_alloc_bytes,
//     go_memstats_sys_bytes, go_gc_cycles_total_gc_cycles_total (counter),
//     go_gc_gogc_percent, go_gc_gomemlimit_bytes and
//     go_sched_gomaxprocs_threads, read from runtime/metrics, which does not
//     stop the world as runtime.ReadMemStats does.
//
// Every value is read at scrape time. A value that cannot be read (a /proc
// file missing, a runtime metric this Go does not have) is left out of that
// scrape. It panics if one of the names is already registered.
func (r *Registry) RegisterProcess() {
	r.Collect("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
		CounterType, nil, func(emit func(float64, ...string)) {
			if s, err := readProcStat(); err == nil {
				emit(s.cpuSeconds)
			}
		})
	r.Collect("process_resident_memory_bytes", "Resident memory size in bytes.",
		GaugeType, nil, func(emit func(float64, ...string)) {
			if s, err := readProcStat(); err == nil {
				emit(s.residentBytes)
			}
		})
	r.Collect("process_virtual_memory_bytes", "Virtual memory size in bytes.",
		GaugeType, nil, func(emit func(float64, ...string)) {
			if s, err := readProcStat(); err == nil {
				emit(s.virtualBytes)
			}
		})
	r.Collect("process_open_fds", "Number of open file descriptors.",
		GaugeType, nil, func(emit func(float64, ...string)) {
			if n, err := openFDs(); err == nil {
				emit(float64(n))
			}
		})
	r.Collect("process_max_fds", "Maximum number of open file descriptors (the soft RLIMIT_NOFILE).",
		GaugeType, nil, func(emit func(float64, ...string)) {
			if n, err := maxFDs(); err == nil {
				emit(float64(n))
			}
		})
	// The start time never changes: read it at the first scrape only.
	var (
		startOnce sync.Once
		start     float64
		startErr  error
	)
	r.Collect("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
		GaugeType, nil, func(emit func(float64, ...string)) {
			startOnce.Do(func() { start, startErr = processStartTime() })
			if startErr == nil {
				emit(start)
			}
		})

	r.Collect("go_goroutines", "Number of goroutines that currently exist.",
		GaugeType, nil, func(emit func(float64, ...string)) {
			emit(float64(runtime.NumGoroutine()))
		})
	r.Collect("go_threads", "Number of OS threads created.",
		GaugeType, nil, func(emit func(float64, ...string)) {
			// What client_golang reads: the threads (Ms) the runtime
			// created, which it keeps.
			n, _ := runtime.ThreadCreateProfile(nil)
			emit(float64(n))
		})
	r.Collect("go_info", "Information about the Go environment.",
		GaugeType, []string{"version"}, func(emit func(float64, ...string)) {
			emit(1, runtime.Version())
		})
	r.runtimeMetric("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use.",
		GaugeType, "/memory/classes/heap/objects:bytes")
	r.runtimeMetric("go_memstats_sys_bytes", "Number of bytes obtained from system (all the memory the Go runtime mapped, not what SQLite or cgo allocate outside it).",
		GaugeType, "/memory/classes/total:bytes")
	r.runtimeMetric("go_gc_cycles_total_gc_cycles_total", "Count of all completed GC cycles.",
		CounterType, "/gc/cycles/total:gc-cycles")
	r.runtimeMetric("go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100 (GOGC, debug.SetGCPercent).",
		GaugeType, "/gc/gogc:percent")
	r.runtimeMetric("go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64 (GOMEMLIMIT, debug.SetMemoryLimit).",
		GaugeType, "/gc/gomemlimit:bytes")
	r.runtimeMetric("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting: the number of OS threads that can execute user-level Go code simultaneously.",
		GaugeType, "/sched/gomaxprocs:threads")
}

// runtimeMetric registers a family whose one sample is the runtime/metrics
// value key, read at scrape time. Like client_golang, its help names the
// source.
func (r *Registry) runtimeMetric(name, help string, typ Type, key string) {
	r.Collect(name, help+" Sourced from "+key+".", typ, nil, func(emit func(float64, ...string)) {
		s := []rtmetrics.Sample{{Name: key}}
		rtmetrics.Read(s)
		switch v := s[0].Value; v.Kind() {
		case rtmetrics.KindUint64:
			emit(float64(v.Uint64()))
		case rtmetrics.KindFloat64:
			emit(v.Float64())
		}
		// KindBad: this Go does not have the metric.
	})
}

// procStat is what the kernel reports about the process (on Linux, in
// /proc/self/stat).
type procStat struct {
	cpuSeconds    float64 // user and system
	virtualBytes  float64
	residentBytes float64
}
