package supervisor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary is also every child the tests run (the standard
// TestHelperProcess trick of os/exec): with helperEnv set, TestMain runs
// the named helper instead of the tests. Its parameters come in the
// environment:
const (
	helperEnv   = "SUPERVISOR_TEST_HELPER" // the helper's mode
	helperFile  = "SUPERVISOR_TEST_FILE"   // a file it appends events to
	helperMS    = "SUPERVISOR_TEST_MS"     // a duration in milliseconds
	helperName  = "SUPERVISOR_TEST_NAME"   // its name in events
	helperChild = "SUPERVISOR_TEST_CHILD"  // supervise: the child's mode
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	code := m.Run()
	if helperDir != "" {
		os.RemoveAll(helperDir)
	}
	os.Exit(code)
}

var (
	helperOnce sync.Once
	helperDir  string
	helperPath string
	helperErr  error
)

// helperBinary returns a copy of the test binary that any uid can run: go
// test builds it in a private (0700) directory, and some children run as
// uids 65532 and 65534.
func helperBinary(t testing.TB) string {
	t.Helper()
	helperOnce.Do(func() {
		helperDir, helperErr = os.MkdirTemp("", "supervisor-test-")
		if helperErr != nil {
			return
		}
		if helperErr = os.Chmod(helperDir, 0o755); helperErr != nil {
			return
		}
		helperPath = filepath.Join(helperDir, "supervisor-helper")
		helperErr = copyFile(os.Args[0], helperPath)
	})
	if helperErr != nil {
		t.Fatalf("copy the test binary: %v", helperErr)
	}
	return helperPath
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// helperChildEnv returns the environment of a helper child in mode with
// the given parameters (key=value). Built with -race, the helper would
// otherwise sleep 1s before it exits (GORACE atexit_sleep_ms).
func helperChildEnv(mode string, params ...string) []string {
	return append(append(BaseEnv(), helperEnv+"="+mode, "GORACE=atexit_sleep_ms=0"), params...)
}

// event appends "WHAT NAME UNIXNANO" to the events file (O_APPEND: lines
// of concurrent writers do not mix).
func event(what string) {
	if os.Getenv(helperFile) == "" {
		return
	}
	f, err := os.OpenFile(os.Getenv(helperFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: %v\n", err)
		os.Exit(10)
	}
	name := os.Getenv(helperName)
	if name == "" {
		name = "-"
	}
	fmt.Fprintf(f, "%s %s %d\n", what, name, time.Now().UnixNano())
	f.Close()
}

func helperDuration() time.Duration {
	var ms int
	fmt.Sscan(os.Getenv(helperMS), &ms)
	return time.Duration(ms) * time.Millisecond
}

// waitTerm blocks until SIGTERM or SIGINT.
func waitTerm() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
}

func runHelper(mode string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	switch mode {
	case "status":
		// Its identity and capabilities, as the kernel sees them.
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			log.Error("read status", "err", err)
			return 1
		}
		attrs := []any{"pid", os.Getpid(), "own_pgrp", syscall.Getpgrp() == os.Getpid()}
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			switch k {
			case "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapAmb":
				attrs = append(attrs, strings.ToLower(k), strings.Join(strings.Fields(v), ","))
			}
		}
		log.Info("status", attrs...)
		waitTerm()
		return 0
	case "crash":
		// Runs for SUPERVISOR_TEST_MS, then fails.
		event("start")
		fmt.Printf("level=INFO msg=running pid=%d\n", os.Getpid())
		time.Sleep(helperDuration())
		fmt.Fprintf(os.Stderr, "boom after %v\n", helperDuration())
		return 3
	case "fail":
		// Fails at once, as a misconfigured lightshark-capturer does.
		event("start")
		log.Info("starting")
		fmt.Fprintf(os.Stderr, "%s: open eth9: no such device\n", filepath.Base(os.Args[0]))
		return 1
	case "term":
		// Takes SUPERVISOR_TEST_MS to exit after SIGTERM.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		event("ready")
		<-ctx.Done()
		event("term")
		time.Sleep(helperDuration())
		event("exit")
		return 0
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		event("ready")
		time.Sleep(time.Hour)
		return 0
	case "logs":
		// One line in each shape the supervisor tells apart.
		fmt.Fprintln(os.Stderr, `time=2026-01-02T03:04:05.000Z level=WARN msg="disk slow" path="/var/x y" n=3 mode=0660`)
		fmt.Println(`{"time":"2026-01-02T03:04:05Z","level":"INFO","msg":"hello","n":3,"ok":true,"peer":{"uid":1}}`)
		fmt.Fprintln(os.Stderr, "lightshark-x: plain error text")
		fmt.Println("some plain output")
		event("ready")
		waitTerm()
		return 0
	case "huge":
		fmt.Print(strings.Repeat("x", 1<<20) + "\n")
		fmt.Println(`level=INFO msg=after`)
		event("ready")
		waitTerm()
		return 0
	case "sleep":
		event(fmt.Sprint("pid-", os.Getpid()))
		time.Sleep(time.Hour)
		return 0
	case "stdin":
		// Reads its standard input to the end, then fails after
		// SUPERVISOR_TEST_MS.
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		event(fmt.Sprint("read-", len(b)))
		time.Sleep(helperDuration())
		fmt.Fprintln(os.Stderr, "stream ended badly")
		return 3
	case "work":
		// Does SUPERVISOR_TEST_MS of work and exits 0.
		event("start")
		time.Sleep(helperDuration())
		return 0
	case "supervise":
		return helperSupervise()
	case "listen":
		// Creates a socket as the API server does; accepts one client.
		path := os.Getenv(helperFile)
		ln, err := net.Listen("unix", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer ln.Close()
		if err := os.Chmod(path, 0o660); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("listening")
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c.Close()
		return 0
	case "dial":
		c, err := net.Dial("unix", os.Getenv(helperFile))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c.Close()
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

// helperSupervise is a lightshark-mini in miniature: it supervises one
// child (mode SUPERVISOR_TEST_CHILD) until SIGTERM. Before, it prints
// what it may do: can_switch_user=, has_net_raw=, and the errors of Run
// for a child with credentials (cred_err=) and with ambient CAP_NET_RAW
// (caps_err=), which an unprivileged supervisor cannot start.
func helperSupervise() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	try := func(c Child) string {
		c.Name, c.Path, c.Env = "try", self, helperChildEnv("fail")
		err := (&Supervisor{Children: []Child{c}, Logger: log}).Run(context.Background())
		return fmt.Sprint(err)
	}
	if os.Geteuid() != 0 {
		log.Info("privileges", "can_switch_user", CanSwitchUser(), "has_net_raw", HasCap(unix.CAP_NET_RAW),
			"cred_err", try(Child{Cred: &syscall.Credential{Uid: 65533, Gid: 65533}}),
			"caps_err", try(Child{AmbientCaps: []uintptr{unix.CAP_NET_RAW}}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s := &Supervisor{
		Children: []Child{{
			Name: "child",
			Path: self,
			Env:  helperChildEnv(os.Getenv(helperChild), helperFile+"="+os.Getenv(helperFile)),
		}},
		Logger: log,
	}
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
