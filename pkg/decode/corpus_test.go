package decode

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// allLinkTypes are the link types Decode reads, plus one it does not.
var allLinkTypes = []uint16{
	LinkTypeNull, LinkTypeEthernet, LinkTypeRaw, LinkTypeLoop, LinkTypeLinuxSLL,
	LinkTypeIPv4, LinkTypeIPv6, LinkTypeSLL2, LinkTypeRaw12, LinkTypeRaw14, 9,
}

// robustnessFrames reads every frame of path: pcapng with pcapgo, classic
// pcap with the lenient reader (which also yields the records pcapgo
// refuses).
func robustnessFrames(path string) ([]frame, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".pcapng") {
		return readCapture(path)
	}
	frames := readPcapLenient(raw)
	if frames == nil {
		return readPcap(raw) // not a pcap header this reader knows; let pcapgo say why
	}
	return frames, nil
}

// TestDecoder_Decode_robustness decodes every frame of the robustness
// captures (truncated, malformed and fuzzer-found frames, many link types)
// with its own link type and then as every link type Decode reads: no
// panic, and every packet consistent.
func TestDecoder_Decode_robustness(t *testing.T) {
	dir := corpusDir(t, "robustness")
	d := NewDecoder()
	var counts [NumResults + 1]int
	var frames int
	for _, path := range captureFiles(t, dir) {
		name := filepath.Base(path)
		fs, err := robustnessFrames(path)
		if err != nil {
			t.Logf("%s: read after %d frames: %v", name, len(fs), err)
		}
		for _, f := range fs {
			frames++
			what := fmt.Sprintf("%s frame %d (link type %d)", name, f.num, f.linkType)
			var p Packet
			res := decodeNoPanic(t, d, what, f.data, f.linkType, f.length, &p)
			checkPacket(t, what, f.data, f.length, &p, res)
			counts[min(int(res), NumResults)]++
			for _, lt := range allLinkTypes {
				what := fmt.Sprintf("%s frame %d as link type %d", name, f.num, lt)
				res := decodeNoPanic(t, d, what, f.data, lt, f.length, &p)
				checkPacket(t, what, f.data, f.length, &p, res)
			}
		}
	}
	var summary []string
	for r, n := range counts[:NumResults] {
		if n > 0 {
			summary = append(summary, fmt.Sprintf("%v=%d", Result(r), n))
		}
	}
	t.Logf("%d frames: %s", frames, strings.Join(summary, " "))
}

// allocFrames returns the table frames and, when the shared corpus is
// there, every frame of the conformance captures.
func allocFrames(tb testing.TB) []frame {
	tb.Helper()
	var frames []frame
	for _, tc := range decodeCases() {
		frames = append(frames, frame{data: tc.data, linkType: tc.lt, length: uint32(len(tc.data))})
	}
	if dir, ok := findCorpusDir("conformance"); ok {
		for _, path := range captureFiles(tb, dir) {
			fs, err := readCapture(path)
			if err != nil {
				tb.Fatalf("read %s: %v", path, err)
			}
			frames = append(frames, fs...)
		}
	}
	return frames
}

// TestDecoder_Decode_allocs guards the hot path: decoding allocates
// nothing, whatever the frame (every table case, errors included, and the
// real frames of the conformance captures).
func TestDecoder_Decode_allocs(t *testing.T) {
	frames := allocFrames(t)
	d := NewDecoder()
	var p Packet
	allocs := testing.AllocsPerRun(5, func() {
		for i := range frames {
			f := &frames[i]
			d.Decode(f.data, f.linkType, f.length, &p)
		}
	})
	if allocs != 0 {
		t.Errorf("Decode of %d frames: %v allocations per run, want 0", len(frames), allocs)
	}
}
