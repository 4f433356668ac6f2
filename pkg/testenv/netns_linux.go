package testenv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// nsCounter makes namespace names unique within the process; the pid and
// random bits make them unique across processes sharing the machine.
var nsCounter atomic.Uint32

// Pair is two network namespaces made for one test, joined by a veth pair
// with IPv4 and IPv6 addresses. Interface names are the same in every Pair
// (each lives in its own namespace): "veth-a" in A, "veth-b" in B.
type Pair struct {
	// A and B are the namespace names, usable with "ip netns exec" and
	// InNetns.
	A, B string
	// DevA and DevB are the veth ends in A and in B.
	DevA, DevB string
	// A4, B4 are the IPv4 addresses (a /30 in 10.200.0.0/16) and A6, B6 the
	// IPv6 ones (a /64 in fd00:6c73::/32, "ls") of DevA and DevB.
	A4, B4, A6, B6 netip.Addr

	mu   sync.Mutex
	cmds []*exec.Cmd
}

// NetnsPair creates two network namespaces joined by a veth pair, with
// addresses on both ends, loopback and the veth ends up, segmentation and
// receive offloads off (so captures see wire-sized packets), and IPv6
// duplicate address detection and router solicitations off (the addresses
// are usable at once; fewer stray frames). It
// skips the test unless it runs as root with ip(8) available. Cleanup kills
// the processes Start started and deletes both namespaces, which deletes
// the veth pair.
func NetnsPair(t testing.TB) *Pair {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip")

	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("random: %v", err)
	}
	n := nsCounter.Add(1)
	r := binary.BigEndian.Uint32(rnd[:])
	base := fmt.Sprintf("ls-%d-%d-%04x", os.Getpid(), n, r&0xffff)
	// One /30 and one /64 per pair, varied so that concurrent pairs do not
	// reuse addresses (they could not collide across namespaces anyway,
	// but captures and logs are easier to tell apart).
	sub := (uint32(os.Getpid())*7919 + n*104729 + r) % (1 << 14)
	p := &Pair{
		A: base + "-a", B: base + "-b",
		DevA: "veth-a", DevB: "veth-b",
		A4: netip.AddrFrom4([4]byte{10, 200, byte(sub >> 6), byte(sub<<2) + 1}),
		B4: netip.AddrFrom4([4]byte{10, 200, byte(sub >> 6), byte(sub<<2) + 2}),
		A6: netip.MustParseAddr(fmt.Sprintf("fd00:6c73:%x:%x::1", sub, r>>16)),
		B6: netip.MustParseAddr(fmt.Sprintf("fd00:6c73:%x:%x::2", sub, r>>16)),
	}

	run := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{p.A, p.B} {
		run("ip", "netns", "add", ns)
		t.Cleanup(func() {
			// Processes still inside would keep the namespace alive
			// after the name is gone; p's own cleanup (registered later,
			// so run earlier) has killed them.
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		})
	}
	t.Cleanup(p.killAll)

	run("ip", "link", "add", p.DevA, "netns", p.A, "type", "veth", "peer", "name", p.DevB, "netns", p.B)
	ethtool, ethtoolErr := exec.LookPath("ethtool")
	for _, end := range []struct {
		ns, dev string
		v4, v6  netip.Addr
	}{{p.A, p.DevA, p.A4, p.A6}, {p.B, p.DevB, p.B4, p.B6}} {
		// accept_dad=0 before the link comes up: the link-local address
		// is not tentative either. No router solicitations: fewer stray
		// frames in captures.
		if err := InNetns(end.ns, func() error {
			for _, f := range []string{"all", "default", end.dev} {
				for _, kv := range [][2]string{{"accept_dad", "0"}, {"router_solicitations", "0"}} {
					if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/"+kv[0], []byte(kv[1]), 0); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("disable IPv6 DAD in %s: %v", end.ns, err)
		}
		run("ip", "-n", end.ns, "link", "set", "lo", "up")
		run("ip", "-n", end.ns, "addr", "add", end.v4.String()+"/30", "dev", end.dev)
		run("ip", "-n", end.ns, "-6", "addr", "add", end.v6.String()+"/64", "dev", end.dev, "nodad")
		run("ip", "-n", end.ns, "link", "set", end.dev, "up")
		if ethtoolErr == nil {
			run("ip", "netns", "exec", end.ns, ethtool, "-K", end.dev, "tso", "off", "gso", "off", "gro", "off")
		} else {
			t.Logf("ethtool not found: offloads stay on (captures may see merged segments)")
		}
	}
	// Wait until both ends are operationally up and no address is
	// tentative.
	deadline := time.Now().Add(10 * time.Second)
	for _, end := range []struct{ ns, dev string }{{p.A, p.DevA}, {p.B, p.DevB}} {
		for {
			link, _ := exec.Command("ip", "-n", end.ns, "-o", "link", "show", "dev", end.dev).Output()
			tent, _ := exec.Command("ip", "-n", end.ns, "-o", "addr", "show", "dev", end.dev, "tentative").Output()
			if strings.Contains(string(link), "LOWER_UP") && len(strings.TrimSpace(string(tent))) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s in %s not ready: %s / tentative: %s", end.dev, end.ns, link, tent)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p
}

// Command returns an unstarted command running args inside namespace ns
// (through "ip netns exec", which execs the program itself, so killing the
// command kills the program).
func (p *Pair) Command(ns string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// Exec runs args inside namespace ns, waits at most a minute, and returns
// their combined output; it fails the test if they fail.
func (p *Pair) Exec(t testing.TB, ns string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Start starts args inside namespace ns and returns the running command;
// the Pair's cleanup kills it (SIGKILL) and reaps it if it is still
// running. Set nothing on the returned command: it has started. To capture
// its output, use Command and StartCmd.
func (p *Pair) Start(t testing.TB, ns string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := p.Command(ns, args...)
	p.StartCmd(t, cmd)
	return cmd
}

// StartCmd starts cmd (made by Command, with its output set up by the
// caller) and kills it at cleanup like Start. A caller that waits for cmd
// itself must do so before the test ends.
func (p *Pair) StartCmd(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	p.mu.Lock()
	p.cmds = append(p.cmds, cmd)
	p.mu.Unlock()
}

func (p *Pair) killAll() {
	p.mu.Lock()
	cmds := p.cmds
	p.cmds = nil
	p.mu.Unlock()
	for _, c := range cmds {
		if c.ProcessState != nil {
			continue // already waited for by its owner
		}
		_ = c.Process.Kill()
		_ = c.Wait()
	}
}

// InNetns runs fn on an OS thread that has joined the named network
// namespace (/run/netns/NAME, as made by "ip netns add"), and returns fn's
// error. It is how a test opens a socket inside a namespace from its own
// process: a socket stays in the namespace it was created in, so an
// AF_PACKET or UDP socket opened by fn keeps capturing or sending there
// after fn returns, from any goroutine.
//
// Only fn's own goroutine is in the namespace: goroutines it starts are
// not. Reading /proc/self/net or /sys/class/net inside fn still shows the
// process's namespace; /proc/thread-self/net and netlink show the thread's.
// The thread is returned to the runtime only if it could be moved back to
// its original namespace; otherwise it is discarded.
func InNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open network namespace: %w", err)
			return
		}
		defer target.Close()
		if err := setns(target, syscall.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("join network namespace %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := setns(orig, syscall.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine
			// instead of running other goroutines in the wrong
			// namespace.
			errc <- fmt.Errorf("return from network namespace %s: %w", name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File, nstype int) error {
	_, _, errno := syscall.RawSyscall(sysSetns, f.Fd(), uintptr(nstype), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
