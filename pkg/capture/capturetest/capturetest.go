// Package capturetest builds small captures for tests: a classic pcap file
// header and records of UDP frames, to feed a capturer through a pipe a
// few packets at a time. It imports only the standard library.
package capturetest

import "encoding/binary"

// PcapHeader returns a classic pcap file header: little-endian,
// microsecond timestamps, Ethernet, snapshot length 65535.
func PcapHeader() []byte {
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535)
	binary.LittleEndian.PutUint32(h[20:], 1) // LINKTYPE_ETHERNET
	return h
}

// UDPRecords returns the pcap records of n Ethernet/IPv4/UDP frames of 46
// bytes from 10.0.0.1 to 10.0.0.2:53, with source ports from, from+1, ...:
// one flow per port. The frame from port p is stamped 1,700,000,000 s plus
// p%1000 ms, so that records of the same ports written again later stay
// within any idle timeout.
func UDPRecords(from uint16, n int) []byte {
	var out []byte
	for i := range n {
		port := from + uint16(i)
		frame := make([]byte, 14+20+8+4)
		binary.BigEndian.PutUint16(frame[12:], 0x0800) // IPv4
		ip := frame[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, 17 // IHL 5, TTL 64, UDP
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[j:]))
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		udp := ip[20:]
		binary.BigEndian.PutUint16(udp[0:], port)
		binary.BigEndian.PutUint16(udp[2:], 53)
		binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[0:], 1_700_000_000)
		binary.LittleEndian.PutUint32(rec[4:], uint32(port)%1000*1000)
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(frame)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(frame)))
		out = append(append(out, rec...), frame...)
	}
	return out
}
