package capture

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpenReader feeds arbitrary bytes to the file reader as a capture
// file: it must never panic, and every packet it returns must respect the
// limits (captured length within the record, at most 256 KiB but for the
// few link types libpcap allows more).
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
	// pcapng with every block type the reader handles, in both byte
	// orders, and two sections.
	for _, order := range []ngOrder{binary.LittleEndian, binary.BigEndian} {
		ng := newNgFile(order)
		ng.idb(1, 64, tsresol(0x80|20), ng.tsoffset(-1)).idb(113, 0, tsresol(9)).block(4, ng.nrb(), 0).
			epb(1, 1<<40, testFrame(60, 1), 60, ngOpt{1, []byte("x")}).spb(testFrame(64, 2), 100).
			block(5, ng.isb(0), 0).pb(0, 7, testFrame(20, 3), 20).block(0xbad, make([]byte, 8), 0).
			shb(otherOrder(order), 1, 2).idb(0, 0).epb(0, 9, testFrame(4, 4), 4)
		f.Add(ng.b)
	}
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
			if len(pkt) != info.CaptureLength || len(pkt) > maxCaptureLength(info.LinkType) || info.Length < 0 {
				t.Fatalf("packet of %d bytes, info %+v", len(pkt), info)
			}
		}
	})
}
