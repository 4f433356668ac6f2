//go:build linux

package codepages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// mapping is one read-only mapping of the executable.
type mapping struct {
	start, end uintptr
	offset     int64 // in the file
	exec       bool  // code
}

func release() (Result, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return Result{}, err
	}
	// Opened before anything changes: a process that cannot open its own
	// executable (its credentials changed since exec) releases nothing.
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	ms, before, err := exeMappings("/proc/self/smaps", exe)
	if err != nil {
		return Result{}, err
	}
	r := Result{Before: before}
	for _, m := range ms {
		r.Mapped += int64(m.end - m.start)
		if err := madvise(m, unix.MADV_RANDOM); err != nil {
			return r, err
		}
	}
	// Twice: the threads that run between the first unmapping and the
	// first drop of the page cache fault their pages back with the
	// neighbours that are still cached.
	for range 2 {
		for _, m := range ms {
			if err := madvise(m, unix.MADV_DONTNEED); err != nil {
				return r, err
			}
		}
		// Only the read-only data's pages leave the page cache. Code
		// would come back in blocks anyway, read again from the disk and
		// charged to this process's cgroup, where the pages cached when
		// the image was pulled cost it nothing.
		for _, m := range ms {
			if m.exec {
				continue
			}
			if err := unix.Fadvise(int(f.Fd()), m.offset, int64(m.end-m.start), unix.FADV_DONTNEED); err != nil {
				return r, fmt.Errorf("fadvise %s: %w", exe, err)
			}
		}
	}
	if _, r.After, err = exeMappings("/proc/self/smaps", exe); err != nil {
		return r, err
	}
	return r, nil
}

func madvise(m mapping, advice int) error {
	// Not Go memory: the addresses go to the kernel as they are rather
	// than through a slice over them.
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, uintptr(advice)); e != 0 {
		return fmt.Errorf("madvise %#x-%#x: %w", m.start, m.end, e)
	}
	return nil
}

// exeMappings reads a smaps file and returns the mappings of the file exe
// that are readable and not writable (the code and the read-only data),
// with the bytes of them resident.
func exeMappings(path, exe string) (ms []mapping, resident int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	in := false // in the fields of a mapping of exe
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		// 00400000-009de000 r-xp 00000000 fe:00 9995477    /path/to/exe
		// Rss:                5752 kB
		if v, ok := bytes.CutPrefix(line, []byte("Rss:")); ok {
			if in {
				kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
				if err != nil {
					return nil, 0, fmt.Errorf("%s: bad line %q", path, line)
				}
				resident += kb << 10
			}
			continue
		}
		fields := bytes.Fields(line)
		if len(fields) < 5 {
			continue // a field line of the current mapping
		}
		lo, hi, ok := bytes.Cut(fields[0], []byte("-"))
		if !ok {
			continue
		}
		perms := fields[1]
		in = len(fields) >= 6 && string(fields[5]) == exe &&
			len(perms) == 4 && perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p'
		if !in {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		off, err3 := strconv.ParseInt(string(fields[2]), 16, 64)
		if err1 != nil || err2 != nil || err3 != nil || end <= start {
			return nil, 0, fmt.Errorf("%s: bad line %q", path, line)
		}
		ms = append(ms, mapping{start: uintptr(start), end: uintptr(end), offset: off, exec: perms[2] == 'x'})
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	if len(ms) == 0 {
		return nil, 0, fmt.Errorf("%s: no read-only mapping of %s", path, exe)
	}
	return ms, resident, nil
}
