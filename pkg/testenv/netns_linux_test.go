package testenv

import (
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestNetnsPair checks that a pair is usable at once in both IP families
// with offloads off, that two pairs differ, and that cleanup removes the
// namespaces and the processes started in them.
func TestNetnsPair(t *testing.T) {
	var names []string
	var pid int
	t.Run("pair", func(t *testing.T) {
		p := NetnsPair(t)
		q := NetnsPair(t)
		if p.A == q.A || p.B == q.B || p.A == p.B {
			t.Errorf("names not unique: %s %s %s %s", p.A, p.B, q.A, q.B)
		}
		names = []string{p.A, p.B}
		// Usable at once: no DAD wait, no retry.
		p.Exec(t, p.A, "ping", "-c", "1", "-W", "2", p.B4.String())
		p.Exec(t, p.A, "ping", "-6", "-c", "1", "-W", "2", p.B6.String())
		p.Exec(t, p.B, "ping", "-c", "1", "-W", "2", p.A4.String())
		if _, err := os.Stat("/usr/sbin/ethtool"); err == nil {
			out := p.Exec(t, p.B, "ethtool", "-k", p.DevB)
			for _, off := range []string{"tcp-segmentation-offload: off", "generic-segmentation-offload: off", "generic-receive-offload: off"} {
				if !strings.Contains(out, off) {
					t.Errorf("%s: no %q in\n%s", p.DevB, off, out)
				}
			}
		}
		cmd := p.Start(t, p.B, "sleep", "600")
		pid = cmd.Process.Pid

		// InNetns: the thread sees the namespace, then comes back.
		var inside []string
		if err := InNetns(p.B, func() error {
			ifs, err := net.Interfaces()
			for _, ifc := range ifs {
				inside = append(inside, ifc.Name)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(inside, []string{"lo", "veth-b"}) {
			t.Errorf("interfaces inside %s: %v", p.B, inside)
		}
		for range 50 {
			InNetns(p.A, func() error { return nil })
		}
		if slices.Contains(interfaceNames(t), "veth-b") {
			t.Error("test goroutine left in a test namespace")
		}
		want := errors.New("from fn")
		if err := InNetns(p.A, func() error { return want }); err != want {
			t.Errorf("InNetns returned %v, want fn's error", err)
		}
	})
	if len(names) == 0 {
		return // skipped
	}
	for _, ns := range names {
		if _, err := os.Stat("/run/netns/" + ns); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still there after cleanup (%v)", ns, err)
		}
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d started in the pair still exists (%v)", pid, err)
	}
}

func TestInNetns_Missing(t *testing.T) {
	called := false
	err := InNetns("lightshark-no-such-namespace", func() error { called = true; return nil })
	if err == nil || called {
		t.Errorf("got %v, called %v; want an error and fn not run", err, called)
	}
}
