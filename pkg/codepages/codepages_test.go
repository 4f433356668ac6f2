package codepages_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lightshark-dev/lightshark-mini/pkg/codepages"
)

// childEnv makes the test binary run child instead of the tests.
const childEnv = "CODEPAGES_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// report is what the child prints.
type report struct {
	codepages.Result
	Again int64 // resident after running the work again
	// Density is the share of the pages resident in the 64 KiB blocks
	// of the executable's read-only data that have any: 1 when
	// fault-around maps whole blocks, lower when pages come back one at
	// a time.
	Density, DensityAgain float64
	Answer                string
	AnswerNow             string // the work's answer before and after Release
	Err                   string
}

// work runs code from several packages and returns an answer that
// depends on all of it.
func work() string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	words := strings.Fields(strings.Repeat("the quick brown fox jumps over the lazy dog ", 200))
	sort.Strings(words)
	js, _ := json.Marshal(words)
	zw.Write(js)
	zw.Close()
	zr, _ := gzip.NewReader(&b)
	out, _ := io.ReadAll(zr)
	re := regexp.MustCompile(`"(qu\w+)"`)
	return fmt.Sprintf("%x %d", sha256.Sum256(out), len(re.FindAllIndex(out, -1)))
}

func child() int {
	var r report
	r.Answer = work()
	r.Density = density()
	res, err := codepages.Release()
	r.Result = res
	if err != nil {
		r.Err = err.Error()
	}
	r.AnswerNow = work()
	r.DensityAgain = density()
	if err == nil {
		again, err := codepages.Release() // reads smaps before dropping again
		r.Again = again.Before
		if err != nil {
			r.Err = err.Error()
		}
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// TestRelease runs a copy of the test binary written back to disk, as
// an installed binary is (the kernel does not drop the dirty pages of a
// file just written), and checks that after Release its code and
// read-only data come back only as they run, and that it still runs.
func TestRelease(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Release works on Linux only")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "codepages.test")
	copyFile(t, self, exe)

	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.Bytes())
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("child printed %q: %v", out, err)
	}
	t.Logf("mapped %d KiB; resident %d KiB before, %d KiB right after, %d KiB after running again; density of the read-only data's resident blocks %.2f before, %.2f after",
		r.Mapped>>10, r.Before>>10, r.After>>10, r.Again>>10, r.Density, r.DensityAgain)
	if r.Err != "" {
		t.Fatalf("Release: %s", r.Err)
	}
	if r.Answer != r.AnswerNow {
		t.Errorf("the work answered %q before Release and %q after", r.Answer, r.AnswerNow)
	}
	if r.Mapped < 1<<20 || r.Before <= 0 || r.Before > r.Mapped {
		t.Errorf("mapped %d bytes, %d resident: not the executable's code", r.Mapped, r.Before)
	}
	// Right after, little of it is mapped: the code that ran since.
	if r.After > r.Before/2 {
		t.Errorf("resident right after Release: %d KiB of %d KiB before", r.After>>10, r.Before>>10)
	}
	// Running the same work again brings back less than was resident
	// before: not the start-up's pages, and the read-only data (the
	// runtime's pc-value tables) a page at a time, not in blocks.
	if r.Again >= r.Before*3/4 {
		t.Errorf("resident after running the work again: %d KiB, before Release %d KiB", r.Again>>10, r.Before>>10)
	}
	if r.Density < 0 || r.DensityAgain < 0 {
		t.Fatalf("cannot read /proc/self/pagemap: density %.2f, %.2f", r.Density, r.DensityAgain)
	}
	if r.DensityAgain > 0.6 || r.DensityAgain > r.Density*3/4 {
		t.Errorf("read-only data pages resident in their 64 KiB blocks: %.2f after Release, %.2f before: still mapped around each fault",
			r.DensityAgain, r.Density)
	}
}

// density reads /proc/self/maps and /proc/self/pagemap (the present
// bit is readable without privilege) and returns the share of pages
// resident in the 64 KiB blocks of the executable's read-only data
// (r--p) that have any resident, or -1 if it cannot read them.
func density() float64 {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return -1
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return -1
	}
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return -1
	}
	defer pm.Close()
	const page, block = 4096, 64 << 10
	var resident, blocks int
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != exe || f[1] != "r--p" {
			continue
		}
		var lo, hi uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err != nil {
			return -1
		}
		buf := make([]byte, (hi-lo)/page*8)
		if _, err := pm.ReadAt(buf, int64(lo/page*8)); err != nil {
			return -1
		}
		for b := 0; b < len(buf); b += block / page * 8 {
			n := 0
			for i := b; i < min(b+block/page*8, len(buf)); i += 8 {
				if buf[i+7]&0x80 != 0 { // bit 63: present
					n++
				}
			}
			if n > 0 {
				resident += n
				blocks++
			}
		}
	}
	if blocks == 0 {
		return -1
	}
	return float64(resident) / float64(blocks*block/page)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
