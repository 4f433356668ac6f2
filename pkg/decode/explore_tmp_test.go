package decode

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
)

func TestExploreTmp(t *testing.T) {
	sub := os.Getenv("EXPLORE")
	if sub == "" {
		t.Skip()
	}
	d := NewDecoder()
	hist := map[string]int{}
	for _, path := range captureFiles(t, corpusDir(t, sub)) {
		frames, err := readCapture(path)
		if err != nil {
			fmt.Printf("%s: read error %v (%d frames)\n", filepath.Base(path), err, len(frames))
		}
		for _, f := range frames {
			var p Packet
			res := d.Decode(f.data, f.linkType, f.length, &p)
			hist[res.String()]++
			pkt := gopacket.NewPacket(f.data, gopacketLinkType(f.linkType), gopacket.Default)
			if os.Getenv("SHOWALL") != "" || pkt.ErrorLayer() != nil && sub == "conformance" {
				fmt.Printf("%s #%d lt=%d: %v %+v | gopacket err: %v\n", filepath.Base(path), f.num, f.linkType, res, viewOf(&p), pkt.ErrorLayer())
			}
			if sub == "robustness" && os.Getenv("RES") == res.String() {
				fmt.Printf("%s #%d lt=%d: %v %+v\n", filepath.Base(path), f.num, f.linkType, res, viewOf(&p))
			}
		}
	}
	fmt.Println(hist)
}
