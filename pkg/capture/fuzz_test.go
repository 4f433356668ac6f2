package capture

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpenReader feeds arbitrary bytes to the file reader as a capture
// file: it must never panic, and every packet it returns must respect the
// limits (captured length within the record, at most 256 KiB).
func FuzzOpenReader(f *testing.F) {
	for _, dir := range []string{"robustness", "conformance"} {
		paths, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "pcaps", dir, "*"))
		for i, p := range paths {
			if i%8 != 0 { // a sample keeps the seed corpus small
				continue
			}
			if b, err := os.ReadFile(p); err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
	f.Add([]byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := OpenReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		defer src.Close()
		for range 100000 {
			pkt, info, err := src.ReadPacket()
			if err != nil {
				return
			}
			if len(pkt) != info.CaptureLength || len(pkt) > 262144 || info.Length < 0 {
				t.Fatalf("packet of %d bytes, info %+v", len(pkt), info)
			}
		}
	})
}
