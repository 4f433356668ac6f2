package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/testenv"
)

// genVersion names generated files: change it whenever the generator's
// output changes, so that stale files in the cache are not reused.
const genVersion = "v1"

// Defaults of the knobs (environment variables override them).
const (
	defaultPackets     = 5_500_000 // LIGHTSHARK_BENCH_PACKETS
	defaultLivePackets = 2_000_000 // LIGHTSHARK_BENCH_LIVE_PACKETS
	mixSeed            = 1
	snapShort          = 128 // the second, truncated copy of the mix
)

// The report every benchmark adds to; TestMain prints it and writes it to
// out/results.md when the run ends.
var results = &report{started: time.Now()}

func TestMain(m *testing.M) {
	code := m.Run()
	if !results.empty() {
		md := results.markdown()
		fmt.Print("\n" + md)
		if dir, err := outDir(); err == nil {
			path := filepath.Join(dir, "results.md")
			if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "write %s: %v\n", path, err)
				code = 1
			} else {
				fmt.Printf("results written to %s\n", path)
			}
		}
	}
	os.Exit(code)
}

// Report sections, in the order they are printed.
const (
	secOffline = "Offline aggregation (side by side, same file, same run)"
	secMemory  = "Memory of the capturer"
	secLive    = "Live capture (tcpreplay at top speed onto a veth, namespaces made by the benchmark)"
	secInProc  = "In-process Go benchmarks"
)

var sectionOrder = []string{secOffline, secMemory, secLive, secInProc}

type row struct{ what, value, target, verdict string }

type report struct {
	mu       sync.Mutex
	started  time.Time
	inputs   []string
	rows     map[string][]row
	notes    map[string][]string
	commands []string
}

func (r *report) empty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rows) == 0 && len(r.notes) == 0
}

// add records a measurement. target is empty when there is none; ok says
// whether the target is met.
func (r *report) add(section, what, value, target string, ok bool) {
	v := ""
	if target != "" {
		v = "ok"
		if !ok {
			v = "**MISS**"
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rows == nil {
		r.rows = map[string][]row{}
	}
	r.rows[section] = append(r.rows[section], row{what, value, target, v})
}

func (r *report) note(section, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.notes == nil {
		r.notes = map[string][]string{}
	}
	r.notes[section] = append(r.notes[section], fmt.Sprintf(format, args...))
}

func (r *report) input(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := fmt.Sprintf(format, args...)
	if !slices.Contains(r.inputs, s) {
		r.inputs = append(r.inputs, s)
	}
}

func (r *report) command(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.commands, s) {
		r.commands = append(r.commands, s)
	}
}

func (r *report) markdown() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "# LightShark-mini benchmark results\n\n")
	fmt.Fprintf(&b, "Run %s (%s), `go test -run '^$' -bench . -benchtime 1x ./bench` (`make bench`).\n\n",
		r.started.UTC().Format(time.RFC3339), time.Since(r.started).Round(time.Second))
	fmt.Fprintf(&b, "Machine: %s\n\n", machine())
	if len(r.inputs) > 0 {
		b.WriteString("Inputs:\n\n")
		for _, s := range r.inputs {
			fmt.Fprintf(&b, "- %s\n", s)
		}
		b.WriteString("\n")
	}
	for _, sec := range sectionOrder {
		rows, notes := r.rows[sec], r.notes[sec]
		if len(rows) == 0 && len(notes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n", sec)
		if len(rows) > 0 {
			b.WriteString("| Measurement | Value | Target | |\n|---|---|---|---|\n")
			for _, x := range rows {
				fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", x.what, x.value, x.target, x.verdict)
			}
			b.WriteString("\n")
		}
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		if len(notes) > 0 {
			b.WriteString("\n")
		}
	}
	if len(r.commands) > 0 {
		b.WriteString("## Commands run\n\n```\n")
		for _, c := range r.commands {
			b.WriteString(c + "\n")
		}
		b.WriteString("```\n")
	}
	return b.String()
}

// machine describes the host: CPU, cores, memory, kernel, Go and tools.
func machine() string {
	var parts []string
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				parts = append(parts, strings.TrimSpace(strings.SplitN(l, ":", 2)[1]))
				break
			}
		}
	}
	parts = append(parts, fmt.Sprintf("%d CPUs", runtime.NumCPU()))
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				parts = append(parts, fmt.Sprintf("%.0f GiB RAM", float64(kb)/(1<<20)))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, "Linux "+strings.TrimSpace(string(b)))
	}
	parts = append(parts, runtime.Version())
	for _, t := range [][]string{{"tcpdump", "--version"}, {"tshark", "--version"}, {"tcpreplay", "--version"}} {
		out, err := exec.Command(t[0], t[1:]...).CombinedOutput()
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "Running as user") {
				parts = append(parts, l)
				break
			}
		}
	}
	return strings.Join(parts, "; ")
}

// outDir returns the cache directory for generated files and results:
// $LIGHTSHARK_BENCH_OUT, or out/ beside this package (git-ignored).
func outDir() (string, error) {
	dir := os.Getenv("LIGHTSHARK_BENCH_OUT")
	if dir == "" {
		dir = "out"
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o755)
}

func mustOutDir(tb testing.TB) string {
	tb.Helper()
	dir, err := outDir()
	if err != nil {
		tb.Fatalf("cache directory: %v", err)
	}
	return dir
}

func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: not a positive number", name, s)
	}
	return n
}

// genFile is a generated capture in the cache.
type genFile struct {
	Path  string
	Stats GenStats
}

var genMu sync.Mutex // one generator at a time

// cached returns the files named by paths (with their stats, kept in a
// .json file beside the first), generating them with write if any is
// missing. Files are written under temporary names and renamed when
// complete, so an interrupted run never leaves a file that looks whole.
func cached(tb testing.TB, paths []string, write func(ws []io.Writer) (GenStats, error)) GenStats {
	tb.Helper()
	genMu.Lock()
	defer genMu.Unlock()
	meta := strings.TrimSuffix(paths[0], ".pcap") + ".json"
	var st GenStats
	if b, err := os.ReadFile(meta); err == nil && json.Unmarshal(b, &st) == nil && st.Packets > 0 {
		ok := true
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				ok = false
			}
		}
		if ok {
			return st
		}
	}
	start := time.Now()
	var files []*os.File
	var ws []io.Writer
	for _, p := range paths {
		f, err := os.Create(p + ".tmp")
		if err != nil {
			tb.Fatalf("create: %v", err)
		}
		files = append(files, f)
		ws = append(ws, f)
	}
	st, err := write(ws)
	for _, f := range files {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		for _, p := range paths {
			os.Remove(p + ".tmp")
		}
		tb.Fatalf("generate %s: %v", paths[0], err)
	}
	for _, p := range paths {
		if err := os.Rename(p+".tmp", p); err != nil {
			tb.Fatal(err)
		}
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(meta, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("generated %s in %v", strings.Join(paths, ", "), time.Since(start).Round(time.Millisecond))
	return st
}

// mixFiles returns the realistic mix of the given size: whole frames and,
// if short, a copy cut to snapShort bytes per frame.
func mixFiles(tb testing.TB, packets int, short bool) (full, cut genFile) {
	tb.Helper()
	dir := mustOutDir(tb)
	base := filepath.Join(dir, fmt.Sprintf("mix-%s-seed%d-%dpkt", genVersion, mixSeed, packets))
	paths := []string{base + ".pcap"}
	if short {
		paths = append(paths, fmt.Sprintf("%s-snap%d.pcap", base, snapShort))
	}
	st := cached(tb, paths, func(ws []io.Writer) (GenStats, error) {
		outs := []Output{{W: ws[0]}}
		if len(ws) > 1 {
			outs = append(outs, Output{W: ws[1], Snaplen: snapShort})
		}
		return Mix{Seed: mixSeed, Packets: packets}.Write(outs...)
	})
	full = genFile{paths[0], st}
	if short {
		cut = genFile{paths[1], st}
	}
	results.input("`%s`: realistic mix, seed %d: %s", filepath.Base(full.Path), mixSeed, describe(st))
	return full, cut
}

func describe(st GenStats) string {
	return fmt.Sprintf("%d packets, %.2f GB on the wire (mean frame %d B), %d conversations (%d TCP, %d UDP, %d ICMP; %d over IPv6), %d ARP, %v of capture time, %d conversations in progress at once",
		st.Packets, float64(st.Bytes)/1e9, st.Bytes/max(st.Packets, 1), st.Conversations, st.TCP, st.UDP, st.ICMP, st.IPv6, st.NonIP,
		st.Duration.Round(time.Millisecond), st.MaxConcurrent)
}

// concurrentFile returns the capture of exactly n concurrent TCP flows.
func concurrentFile(tb testing.TB, n int) genFile {
	tb.Helper()
	path := filepath.Join(mustOutDir(tb), fmt.Sprintf("concurrent-%s-%dflows.pcap", genVersion, n))
	st := cached(tb, []string{path}, func(ws []io.Writer) (GenStats, error) {
		return Concurrent{Seed: 2, Flows: n}.Write(Output{W: ws[0]})
	})
	return genFile{path, st}
}

// warm reads a file once so that every tool then finds it in the page
// cache.
func warm(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		tb.Fatal(err)
	}
}

// built holds the binaries built from this tree, by package.
var built sync.Map // "./cmd/…" → *builtBin

type builtBin struct {
	once sync.Once
	path string
	err  error
}

// buildBin returns the binary of the package pkg ("./cmd/capturer"),
// built once from this tree into the cache directory as name (as make
// build does: static, trimmed).
func buildBin(tb testing.TB, pkg, name string) string {
	tb.Helper()
	v, _ := built.LoadOrStore(pkg, new(builtBin))
	b := v.(*builtBin)
	b.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			b.err = fmt.Errorf("go not found on PATH: cannot build %s", pkg)
			return
		}
		dir, err := outDir()
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags", "-s -w", "-o", b.path, pkg)
		cmd.Dir = testenv.ModuleRoot(tb)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
			return
		}
		// Written back, as an installed binary is: the kernel keeps a
		// fresh file's dirty pages in the page cache whatever the process
		// asks (codepages.Release).
		b.err = syncFile(b.path)
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// syncFile flushes the file at path to disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// capturerBin returns the lightshark-capturer binary built from this tree.
func capturerBin(tb testing.TB) string {
	tb.Helper()
	if runtime.GOOS != "linux" {
		tb.Skipf("needs Linux (/proc, AF_PACKET), not %s", runtime.GOOS)
	}
	return buildBin(tb, "./cmd/capturer", "lightshark-capturer")
}

// proc is a started command whose peak resident memory is sampled from
// /proc/PID/status (VmHWM) until it exits.
type proc struct {
	cmd    *exec.Cmd
	stderr *testenv.Buffer
	start  time.Time
	hwm    atomic.Int64 // bytes
	done   chan struct{}
}

// measured is what a finished proc used.
type measured struct {
	Wall      time.Duration
	User, Sys time.Duration
	// HWM is the largest VmHWM seen while the process ran (sampled every
	// 2 ms; VmHWM only grows, so this misses at most the last 2 ms).
	HWM    int64
	Stderr string
	Err    error
}

func (m measured) CPU() time.Duration { return m.User + m.Sys }

// startProc starts cmd with start (cmd.Start when nil), capturing its
// standard error unless the caller set it.
func startProc(tb testing.TB, cmd *exec.Cmd, start func() error) *proc {
	tb.Helper()
	p := &proc{cmd: cmd, stderr: &testenv.Buffer{}, done: make(chan struct{})}
	if cmd.Stderr == nil {
		cmd.Stderr = p.stderr
	}
	if start == nil {
		start = cmd.Start
	}
	p.start = time.Now()
	if err := start(); err != nil {
		tb.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	results.command(strings.Join(cmd.Args, " "))
	go func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			if v := procStatus(cmd.Process.Pid, "VmHWM"); v > p.hwm.Load() {
				p.hwm.Store(v)
			}
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// wait waits for the process and returns what it used.
func (p *proc) wait() measured {
	err := p.cmd.Wait()
	wall := time.Since(p.start)
	close(p.done)
	m := measured{Wall: wall, HWM: p.hwm.Load(), Stderr: p.stderr.String(), Err: err}
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.User = time.Duration(ru.Utime.Nano())
		m.Sys = time.Duration(ru.Stime.Nano())
	}
	return m
}

// procStatus returns a memory field of /proc/PID/status in bytes (0 if the
// process or the field is gone).
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, field+":") {
			continue
		}
		f := strings.Fields(l[len(field)+1:])
		if len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			return n << 10
		}
	}
	return 0
}

// procCPU returns a running process's utime+stime from /proc/PID/stat.
func procCPU(pid int) (time.Duration, string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, ""
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, ""
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100), f[0] // USER_HZ is 100 on Linux
}

// run runs a command to completion, measured.
func run(tb testing.TB, ctx context.Context, stdout io.Writer, args ...string) measured {
	tb.Helper()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout = stdout
	return startProc(tb, cmd, nil).wait()
}

// capStats is the part of the capturer's --stats line the benchmarks use.
type capStats struct {
	Packets        uint64            `json:"packets"`
	Bytes          uint64            `json:"bytes"`
	KernelReceived uint64            `json:"kernel_received"`
	KernelDrops    uint64            `json:"kernel_drops"`
	FlowPackets    uint64            `json:"flow_packets"`
	NonIP          uint64            `json:"non_ip"`
	DecodeErrors   map[string]uint64 `json:"decode_errors"`
	Flows          uint64            `json:"flows"`
	ActiveFlows    uint64            `json:"active_flows"`
	Evictions      uint64            `json:"evictions"`
}

// parseCapStats finds the {"stats":…} line in the capturer's standard
// error.
func parseCapStats(stderr string) (capStats, error) {
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(l, `{"stats"`) {
			continue
		}
		var v struct {
			Stats capStats `json:"stats"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			return capStats{}, err
		}
		return v.Stats, nil
	}
	return capStats{}, fmt.Errorf("no stats line in: %q", stderr)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
