package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of the Supervisor's optional fields, used when a field is zero.
const (
	DefaultStopTimeout     = 10 * time.Second
	DefaultStartupWindow   = 5 * time.Second
	DefaultMaxFailedStarts = 3
	DefaultMinBackoff      = 250 * time.Millisecond
	DefaultMaxBackoff      = 30 * time.Second
	DefaultMaxLineBytes    = 8 << 10
)

// Child describes one program the Supervisor runs.
type Child struct {
	// Name identifies the child in logs (proc=NAME) and errors, e.g.
	// "capturer" or "apiserver". Names must be unique and non-empty.
	Name string
	// Path is the program to run (see FindBinary); it is also argv[0].
	Path string
	// Args are the arguments after argv[0].
	Args []string
	// Env is the child's whole environment. nil means BaseEnv(): the
	// supervisor's own environment is not passed on, so that secrets (such
	// as LIGHTSHARK_API_TOKEN) reach only the child they are given to.
	Env []string
	// Cred is the uid, gid and supplementary groups to run as; nil runs
	// the child as the supervisor's own user. Switching needs CAP_SETUID
	// and CAP_SETGID (see CanSwitchUser). Groups nil clears the groups.
	Cred *syscall.Credential
	// AmbientCaps are capabilities (unix.CAP_*) the child keeps across
	// exec, as ambient capabilities, with or without Cred. Each must be in
	// the supervisor's permitted set. Linux only.
	AmbientCaps []uintptr
	// OneShot children finish: an exit with status 0 is the end of their
	// work (e.g. a capture file imported), not a failure, and they are not
	// restarted. Other exits restart them as any child.
	OneShot bool
	// Stdin is the child's standard input; nil is /dev/null. A child
	// given one runs once, since what it read is gone: it is never
	// restarted. Exiting with an error within StartupWindow ends Run
	// (a *ChildError), later it is logged and the other children go on.
	Stdin *os.File
}

// Supervisor runs Children until its context is cancelled or one of them
// cannot start. Set the fields, then call Run once; the zero value of each
// optional field means its default. Its fields must not change while Run
// runs.
type Supervisor struct {
	// Children are started in order and stopped in reverse order. List the
	// capturer after the API server: at shutdown the capturer stops first
	// and delivers its last batch, which the API server commits before it
	// is stopped in turn.
	Children []Child

	// Logger receives the supervisor's own records (child started,
	// exited, restarting, stopping), tagged component=supervisor. nil
	// writes them to Stderr in LogFormat at level INFO.
	Logger *slog.Logger
	// LogFormat is the format of the lines re-emitted from the children:
	// "text" (the default; slog's logfmt) or "json" (one object per line).
	// Each child line gets proc=NAME ("proc":"NAME"); a logfmt line is
	// converted to JSON and a JSON line to logfmt when the formats differ;
	// a line in neither format becomes a record whose msg is the line
	// (level ERROR from standard error, INFO from standard output).
	LogFormat string
	// Stderr receives the children's lines (and the supervisor's records
	// when Logger is nil), one Write per line. nil means os.Stderr.
	Stderr io.Writer
	// MaxLineBytes bounds a child's line (default 8 KiB). A longer line is
	// cut there and re-emitted as a record with truncated_bytes; the rest
	// is discarded without being held in memory.
	MaxLineBytes int

	// StopTimeout is how long a child has to exit after SIGTERM before it
	// gets SIGKILL (default 10s). Children stop one after the other, so a
	// whole stop may take len(Children)×StopTimeout: give the container a
	// longer grace period than that (docker stop -t, Kubernetes
	// terminationGracePeriodSeconds).
	StopTimeout time.Duration
	// StartupWindow is how long a child must run to be up (default 5s). A
	// child that was never up and exits with an error MaxFailedStarts
	// times (default 3), each within StartupWindow of its start, makes Run
	// return a *ChildError: it is misconfigured, retrying will not help.
	// Once up, a child is restarted whatever happens.
	StartupWindow   time.Duration
	MaxFailedStarts int
	// MinBackoff and MaxBackoff bound the wait before a child is
	// restarted (defaults 250ms and 30s): MinBackoff after the first exit,
	// doubling after each restart up to MaxBackoff, and MinBackoff again
	// after a run that lasted at least MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// afterStart, when set (by tests), is called by the goroutine that
	// started a child, right after it started.
	afterStart func()
}

// ChildError is the error Run returns when a child cannot start: it exited
// with an error (or could not be executed) MaxFailedStarts times, each
// within StartupWindow of its start, and was never up.
type ChildError struct {
	// Name is the child's Name.
	Name string
	// Line is the last error line the child wrote (its last unstructured
	// standard error line, or the msg and err of its last ERROR record),
	// without a leading "PROGRAM: " naming its own binary. It is empty when
	// the child wrote none.
	Line string
	// Err is the last exit status (*exec.ExitError) or start error.
	Err error
}

// Error returns "NAME: LINE", or "NAME: ERR" when the child wrote no
// error line.
func (e *ChildError) Error() string {
	if e.Line != "" {
		return e.Name + ": " + e.Line
	}
	return e.Name + ": " + e.Err.Error()
}

// Unwrap returns Err.
func (e *ChildError) Unwrap() error { return e.Err }

// Run starts the children in order and supervises them until ctx is
// cancelled, then stops them in reverse order (SIGTERM, then SIGKILL after
// StopTimeout) and returns nil once all have exited. When a child cannot
// start it stops the others the same way and returns a *ChildError. Other
// errors report an invalid Supervisor before anything was started.
//
// Run handles no signal itself. The caller cancels ctx on SIGINT/SIGTERM
// and exits at once on a second signal; the kernel then kills the
// children (see the package documentation):
//
//	sigs := make(chan os.Signal, 2)
//	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
//	ctx, cancel := context.WithCancel(context.Background())
//	go func() {
//		<-sigs
//		cancel()
//		<-sigs
//		os.Exit(1)
//	}()
//	err := s.Run(ctx)
func (s *Supervisor) Run(ctx context.Context) error {
	cfg, err := s.withDefaults()
	if err != nil {
		return err
	}
	out := newOutput(cfg.Stderr, cfg.LogFormat == "json", cfg.MaxLineBytes)
	log := cfg.Logger
	if log == nil {
		log = slog.New(out.handler())
	}
	log = log.With("component", "supervisor")
	if ctx.Err() != nil {
		return nil
	}

	fatal := make(chan error, len(cfg.Children))
	var running []*child
	// stop stops the running children in reverse order, one at a time.
	stop := func() {
		for i := len(running) - 1; i >= 0; i-- {
			running[i].stop()
		}
	}
	for _, c := range cfg.Children {
		ch := &child{Child: c, cfg: &cfg, log: log, out: out, started: make(chan struct{}), done: make(chan struct{})}
		ch.ctx, ch.cancel = context.WithCancel(context.Background())
		running = append(running, ch)
		go ch.loop(fatal)
		// Start the next child only once this one is executing.
		select {
		case <-ch.started:
		case <-ctx.Done():
			stop()
			return nil
		case err := <-fatal:
			stop()
			return err
		}
	}
	select {
	case <-ctx.Done():
		log.Info("stopping children")
	case err = <-fatal:
	}
	stop()
	return err
}

// withDefaults returns a copy of s with defaults in place of zero values,
// or an error naming what is wrong with it.
func (s *Supervisor) withDefaults() (Supervisor, error) {
	c := *s
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	setDefault(&c.MaxLineBytes, DefaultMaxLineBytes)
	setDefault(&c.StopTimeout, DefaultStopTimeout)
	setDefault(&c.StartupWindow, DefaultStartupWindow)
	setDefault(&c.MaxFailedStarts, DefaultMaxFailedStarts)
	setDefault(&c.MinBackoff, DefaultMinBackoff)
	setDefault(&c.MaxBackoff, DefaultMaxBackoff)
	switch {
	case c.LogFormat == "":
		c.LogFormat = "text"
	case c.LogFormat != "text" && c.LogFormat != "json":
		return c, fmt.Errorf("log format %q is not text or json", c.LogFormat)
	}
	if len(c.Children) == 0 {
		return c, errors.New("no child to run")
	}
	if c.MaxLineBytes < 64 {
		return c, fmt.Errorf("MaxLineBytes %d is below 64", c.MaxLineBytes)
	}
	if c.MaxBackoff < c.MinBackoff {
		return c, fmt.Errorf("MaxBackoff %v is below MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	}
	seen := make(map[string]bool)
	for _, ch := range c.Children {
		switch {
		case ch.Name == "":
			return c, fmt.Errorf("child %q: no name", ch.Path)
		case seen[ch.Name]:
			return c, fmt.Errorf("two children named %q", ch.Name)
		case ch.Path == "":
			return c, fmt.Errorf("%s: no path", ch.Name)
		}
		seen[ch.Name] = true
		if err := checkPrivileges(ch); err != nil {
			return c, fmt.Errorf("%s: %w", ch.Name, err)
		}
	}
	return c, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// child is the state of one Child while Run runs. Its loop goroutine is
// owned by Run, which stops it with stop.
type child struct {
	Child
	cfg *Supervisor
	log *slog.Logger
	out *output

	ctx     context.Context // cancelled by stop: terminate, don't restart
	cancel  context.CancelFunc
	started chan struct{} // closed after the first start attempt
	done    chan struct{} // closed when loop returns
}

// stop terminates the child (SIGTERM, SIGKILL after StopTimeout) and waits
// until it has exited and will not be restarted.
func (c *child) stop() {
	c.cancel()
	<-c.done
}

// loop runs the child, restarting it when it exits, until stop is called
// or it fails to start too often; then it sends a *ChildError on fatal.
func (c *child) loop(fatal chan<- error) {
	defer close(c.done)
	first := true
	backoff := c.cfg.MinBackoff
	failedStarts := 0
	up := false
	for {
		r := c.runOnce(func() {
			if first {
				first = false
				close(c.started)
			}
		})
		if c.ctx.Err() != nil {
			return
		}
		if c.OneShot && r.err == nil {
			c.log.Info("child finished", "proc", c.Name, "ran", r.ran.Round(time.Millisecond))
			return
		}
		if c.Stdin != nil {
			// Its input cannot be read again.
			switch {
			case r.err == nil:
				c.log.Info("child finished", "proc", c.Name, "ran", r.ran.Round(time.Millisecond))
			case r.ran < c.cfg.StartupWindow:
				fatal <- &ChildError{Name: c.Name, Line: r.lastErr, Err: r.err}
			default:
				c.log.Error("child exited, not restarting: it read its standard input", "proc", c.Name,
					"status", r.err.Error(), "ran", r.ran.Round(time.Millisecond), "last_error", r.lastErr)
			}
			return
		}
		if r.ran >= c.cfg.StartupWindow {
			up = true
		}
		if r.ran >= c.cfg.MaxBackoff {
			backoff = c.cfg.MinBackoff
		}
		if !up && r.err != nil {
			failedStarts++
			if failedStarts >= c.cfg.MaxFailedStarts {
				fatal <- &ChildError{Name: c.Name, Line: r.lastErr, Err: r.err}
				return
			}
		}
		status := "exit status 0"
		if r.err != nil {
			status = r.err.Error()
		}
		attrs := []any{"proc", c.Name, "status", status, "ran", r.ran.Round(time.Millisecond), "restart_in", backoff}
		if r.pid != 0 {
			attrs = append(attrs, "pid", r.pid)
		}
		if r.lastErr != "" {
			attrs = append(attrs, "last_error", r.lastErr)
		}
		c.log.Warn("child exited, restarting", attrs...)
		t := time.NewTimer(backoff)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// result is the outcome of one run of a child.
type result struct {
	pid     int           // 0 when it did not start
	ran     time.Duration // from start to exit
	err     error         // nil: exit status 0
	lastErr string        // last error line, see ChildError.Line
}

// readerGrace bounds how long a child's output is read after it exited:
// a grandchild may hold the pipes open.
const readerGrace = time.Second

// runOnce starts the child once and waits until it exits, signalling it
// when c.ctx is cancelled. started is called after the start attempt.
func (c *child) runOnce(started func()) result {
	// PR_SET_PDEATHSIG fires when the thread that forked the child exits,
	// not the process (go.dev/issue/27505). The runtime ends a thread when
	// a goroutine locked to it returns without unlocking, so keep this
	// thread to ourselves for the child's whole life: no other goroutine
	// can run on it, and so none can make it exit.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		started()
		return result{err: fmt.Errorf("create pipe: %w", err)}
	}
	stderr, stderrW, err := os.Pipe()
	if err != nil {
		stdout.Close()
		stdoutW.Close()
		started()
		return result{err: fmt.Errorf("create pipe: %w", err)}
	}
	env := c.Env
	if env == nil {
		env = BaseEnv()
	}
	cmd := &exec.Cmd{
		Path:        c.Path,
		Args:        append([]string{c.Path}, c.Args...),
		Env:         env,
		Stdout:      stdoutW,
		Stderr:      stderrW,
		SysProcAttr: sysProcAttr(c.Child),
	}
	if c.Stdin != nil {
		cmd.Stdin = c.Stdin // an *os.File: the child gets the descriptor itself
	}
	err = cmd.Start()
	stdoutW.Close()
	stderrW.Close()
	started()
	if err != nil {
		stdout.Close()
		stderr.Close()
		return result{err: err}
	}
	start := time.Now()
	pid := cmd.Process.Pid
	attrs := []any{"proc", c.Name, "pid", pid, "path", c.Path}
	if c.Cred != nil {
		attrs = append(attrs, "uid", c.Cred.Uid, "gid", c.Cred.Gid)
	}
	if len(c.AmbientCaps) > 0 {
		attrs = append(attrs, "ambient_caps", capNames(c.AmbientCaps))
	}
	c.log.Info("child started", attrs...)
	if c.cfg.afterStart != nil {
		c.cfg.afterStart()
	}

	last := &lastLine{prog: filepath.Base(c.Path)}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		c.out.copyLines(stdout, c.Name, false, last)
	}()
	go func() {
		defer readers.Done()
		c.out.copyLines(stderr, c.Name, true, last)
	}()

	exited := make(chan struct{})
	stopperDone := make(chan struct{})
	go func() {
		defer close(stopperDone)
		c.stopper(cmd.Process, exited)
	}()
	err = cmd.Wait()
	ran := time.Since(start)
	close(exited)
	<-stopperDone

	readDone := make(chan struct{})
	go func() {
		readers.Wait()
		close(readDone)
	}()
	select {
	case <-readDone:
	case <-time.After(readerGrace):
		// Pipes are in non-blocking mode: a deadline ends a pending read.
		stdout.SetReadDeadline(time.Now())
		stderr.SetReadDeadline(time.Now())
		<-readDone
	}
	stdout.Close()
	stderr.Close()
	return result{pid: pid, ran: ran, err: err, lastErr: last.get()}
}

// stopper signals p when the child is stopped (c.ctx cancelled) before it
// exits: SIGTERM, then SIGKILL after StopTimeout. It returns when exited
// is closed.
func (c *child) stopper(p *os.Process, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	case <-c.ctx.Done():
	}
	c.log.Info("stopping child", "proc", c.Name, "pid", p.Pid, "signal", "SIGTERM")
	start := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.log.Warn("signal child", "proc", c.Name, "pid", p.Pid, "err", err)
	}
	t := time.NewTimer(c.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-exited:
		c.log.Info("child stopped", "proc", c.Name, "pid", p.Pid, "took", time.Since(start).Round(time.Millisecond))
		return
	case <-t.C:
	}
	c.log.Warn("child did not stop in time, killing it", "proc", c.Name, "pid", p.Pid,
		"stop_timeout", c.cfg.StopTimeout, "signal", "SIGKILL")
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.log.Warn("signal child", "proc", c.Name, "pid", p.Pid, "err", err)
	}
	<-exited
}

// lastLine holds a child's last error line, shared by its two output
// readers.
type lastLine struct {
	prog string // base name of the binary, removed from the start of a line
	mu   sync.Mutex
	line string
}

// maxErrorLine bounds the error line kept for ChildError.
const maxErrorLine = 1024

func (l *lastLine) set(s string) {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "\uFFFD")
	s = strings.TrimPrefix(s, l.prog+": ")
	if s == "" {
		return
	}
	if len(s) > maxErrorLine {
		s = strings.ToValidUTF8(s[:maxErrorLine], "") + "…"
	}
	l.mu.Lock()
	l.line = s
	l.mu.Unlock()
}

func (l *lastLine) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.line
}
