// Package communityid computes the Community ID (version 1) of a flow tuple,
// the flow identifier Zeek, Suricata, Arkime, Wireshark and Elastic attach to
// their records, so a LightShark-mini flow can be joined with theirs by a
// plain string comparison.
//
// The algorithm follows the specification in
// https://github.com/corelight/community-id-spec and its reference
// implementation (corelight/pycommunityid):
//
//	sha1(seed . saddr . daddr . proto . 0 . sport . dport)
//
// in network byte order, with the endpoints ordered so that the smaller
// address (then the smaller port) comes first, rendered as "1:" followed by
// the base64 (or, for troubleshooting, hex) form of the digest.
//
// ICMP (protocol 1) and ICMPv6 (58) have no ports: callers pass the message
// type as the source port and the code as the destination port, as Zeek
// does. Request/reply types are mapped to a pseudo port pair (type,
// counterpart type) so both directions share one ID; every other type is
// one-way and hashed as (type, code) without reordering. Ports are hashed
// only for TCP, UDP, SCTP, ICMP and ICMPv6; for any other protocol they are
// ignored and the ID covers the addresses and protocol only.
//
// The package is a leaf: it imports only the standard library, keeps no
// state and is safe for concurrent use.
package communityid
