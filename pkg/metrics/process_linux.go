package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
)

// userHZ is the unit of the times in /proc/[pid]/stat: clock ticks
// (sysconf(_SC_CLK_TCK)), which the kernel reports as 100 per second on
// every architecture (proc(5), USER_HZ). Prometheus' procfs assumes it too.
const userHZ = 100

// statFields returns the fields of /proc/self/stat from the third (state)
// on: fields[0] is proc(5)'s field 3. The second field, the command name in
// parentheses, may itself hold spaces and parentheses, so the fields start
// after its last ')'.
func statFields() ([][]byte, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("parse /proc/self/stat: no ')' after the command name")
	}
	f := bytes.Fields(b[i+1:])
	// Up to rss, field 24.
	if len(f) < 22 {
		return nil, fmt.Errorf("parse /proc/self/stat: %d fields after the command name, want at least 22", len(f))
	}
	return f, nil
}

// statField returns proc(5)'s field n (n >= 3) of fields as a number.
func statField(fields [][]byte, n int) (uint64, error) {
	v, err := strconv.ParseUint(string(fields[n-3]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/self/stat field %d: %w", n, err)
	}
	return v, nil
}

func readProcStat() (procStat, error) {
	f, err := statFields()
	if err != nil {
		return procStat{}, err
	}
	var v [4]uint64
	// utime (14), stime (15) in ticks, vsize (23) in bytes, rss (24) in
	// pages.
	for i, n := range []int{14, 15, 23, 24} {
		if v[i], err = statField(f, n); err != nil {
			return procStat{}, err
		}
	}
	return procStat{
		cpuSeconds:    float64(v[0]+v[1]) / userHZ,
		virtualBytes:  float64(v[2]),
		residentBytes: float64(v[3]) * float64(os.Getpagesize()),
	}, nil
}

// processStartTime returns the Unix time the process started: its start
// in ticks after boot (field 22 of /proc/self/stat) plus the boot time
// (btime in /proc/stat).
func processStartTime() (float64, error) {
	f, err := statFields()
	if err != nil {
		return 0, err
	}
	ticks, err := statField(f, 22)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			boot, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse btime in /proc/stat: %w", err)
			}
			return float64(boot) + float64(ticks)/userHZ, nil
		}
	}
	return 0, errors.New("parse /proc/stat: no btime line")
}

// openFDs returns the number of open file descriptors. Since Linux 6.2 the
// size of /proc/self/fd is that number (commit f1f1f2569901); before, it is
// 0 and the directory is read instead, not counting the descriptor that
// reads it.
func openFDs() (int, error) {
	if fi, err := os.Stat("/proc/self/fd"); err == nil && fi.Size() > 0 {
		return int(fi.Size()), nil
	}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	n := 0
	for {
		names, err := d.Readdirnames(128)
		n += len(names)
		if err == io.EOF {
			return n - 1, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// maxFDs returns the soft limit on open file descriptors, as the "Max open
// files" line of /proc/self/limits has it.
func maxFDs() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return l.Cur, nil
}
