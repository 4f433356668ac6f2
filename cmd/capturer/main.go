// Command lightshark-capturer captures packets (live AF_PACKET or a
// pcap/pcapng file), aggregates them into bidirectional flows and writes
// them out. It is the only privileged part of LightShark-mini.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lightshark-dev/lightshark-mini/ipc"
	"github.com/lightshark-dev/lightshark-mini/pkg/capfilter"
	"github.com/lightshark-dev/lightshark-mini/pkg/capture"
	"github.com/lightshark-dev/lightshark-mini/pkg/capturer"
	"github.com/lightshark-dev/lightshark-mini/pkg/cli"
	"github.com/lightshark-dev/lightshark-mini/pkg/codepages"
	"github.com/lightshark-dev/lightshark-mini/pkg/config"
	"github.com/lightshark-dev/lightshark-mini/pkg/flow"
	"github.com/lightshark-dev/lightshark-mini/pkg/logging"
	"github.com/lightshark-dev/lightshark-mini/pkg/privdrop"
	"github.com/lightshark-dev/lightshark-mini/pkg/record"
	"github.com/lightshark-dev/lightshark-mini/pkg/version"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// The capturer lives in a small memory budget and its live heap
		// is mostly the flow table: collect at 50% growth, not 100%.
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		cli.PrintError(os.Stderr, "lightshark-capturer", err)
		os.Exit(1)
	}
}

type options struct {
	read           string
	output         string
	printStats     bool
	cfg            *config.Config
	iface          string // the interface captured: cfg.Interface or the detected one
	stdin          io.Reader
	stdout, stderr io.Writer
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := newCommand(stdin, stdout, stderr)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd.ExecuteContext(ctx)
}

func newCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	o := &options{stdin: stdin, stdout: stdout, stderr: stderr}
	cmd := &cobra.Command{
		Use:   "lightshark-capturer (-i IFACE | --read FILE) (--socket PATH | --output jsonl) [flags]",
		Short: "Capture packets and aggregate them into bidirectional flows",
		Long: `lightshark-capturer reads packets from a network interface (AF_PACKET,
needs CAP_NET_RAW) or from a pcap/pcapng file, decodes them and aggregates them
into exact bidirectional flows (per-direction packets and bytes, TCP history
and state, Community ID). It is the only privileged part of LightShark-mini:
started as root, or with CAP_NET_RAW alone, it opens its socket, attaches the
filter, then gives up every capability (and, as root, switches to
--capturer-user) before reading a packet.

Offline (forensic) mode prints every flow of a file as one JSON object per line
and exits:

  lightshark-capturer --read trace.pcap --output jsonl
  tcpdump -w - | lightshark-capturer --read - --output jsonl

Live, --output jsonl prints each flow as it ends (idle, closed, evicted) and the
remaining ones at SIGINT/SIGTERM; --socket sends every flow update, the packet
samples and the capture statistics to lightshark-apiserver.`,
		Example: `  lightshark-capturer --read trace.pcapng --output jsonl | jq -c 'select(.state=="REJ")'
  lightshark-capturer -i eth0 --socket /run/lightshark/ipc.sock --filter-port 443`,
	}
	cli.Bind(cmd, config.Capturer, func(ctx context.Context, cfg *config.Config) error {
		o.cfg = cfg
		return o.run(ctx)
	})
	f := cmd.Flags()
	f.StringVarP(&o.read, "read", "r", "", `read packets from a pcap or pcapng file ("-" for standard input) instead of an interface`)
	f.StringVar(&o.output, "output", "", `write flows to standard output in this format: "jsonl" (instead of --socket)`)
	f.BoolVar(&o.printStats, "stats", false, "print capture statistics as JSON on standard error at the end")
	for _, n := range []string{"read", "output", "stats"} {
		cli.SetGroup(f, n, "Input and output")
	}
	cli.Alias(cmd, "user", "capturer-user")
	return cmd
}

func (o *options) run(ctx context.Context) error {
	cfg := o.cfg
	log, err := logging.New(o.stderr, cfg.LogFormat, cfg.Quiet)
	if err != nil {
		return err
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit sized to what the capturer holds: the flow table
		// (about 150 bytes a flow), the IPC resend buffer (4 MiB) and
		// working room. The GC works harder near it instead of letting
		// the heap double; GOMEMLIMIT overrides it.
		debug.SetMemoryLimit(softMemoryLimit(cfg.MaxFlows))
	}
	spec, err := capfilter.FromConfig(cfg)
	if err != nil {
		return err
	}
	// Flows go to the API server's socket unless --output asks for
	// standard output.
	socket := cfg.Socket
	if o.output != "" {
		socket = ""
	}
	o.iface = cfg.Interface
	switch {
	case o.output != "" && o.output != "jsonl":
		return fmt.Errorf("--output: %q is not a known format (jsonl)", o.output)
	case o.read != "" && o.iface != "":
		return errors.New("--read and --interface exclude each other")
	case o.output != "" && cfg.Origin("socket").Source == "--socket":
		return errors.New("--output and --socket exclude each other")
	}

	table := flow.NewTable(cfg.MaxFlows)
	table.IdleTimeout = time.Duration(cfg.ConnectionTimeout) * time.Second
	table.ClosedTimeout = time.Duration(cfg.ClosedTimeout) * time.Second
	p := capturer.NewPipeline(table)
	p.SampleRate = cfg.SampleRate
	var out *capturer.JSONLWriter
	var client *ipc.Client
	var exp *capturer.Exporter
	var periodic *capturer.Periodic
	var src capture.Source
	if o.output != "" {
		out = capturer.NewJSONLWriter(o.stdout)
		table.OnEnd = out.Write
		if o.read == "" || o.readsStream() {
			// Live or streamed, the flows that ended reach the reader every
			// flush interval, as tcpdump -l prints its lines, rather than
			// when 64 KiB of them have piled up; a file is written at its
			// own speed.
			periodic = &capturer.Periodic{
				Interval: cfg.FlushInterval,
				Flush:    func() { out.Flush() }, // an error sticks: the last Flush reports it
			}
		}
	} else {
		client = &ipc.Client{Path: socket, Logger: log}
		exp = capturer.NewExporter(client)
		table.OnEnd = exp.Ended
		p.OnSample = exp.Sample
		periodic = &capturer.Periodic{
			Interval: cfg.FlushInterval,
			Due:      exp.Full,
			Flush: func() {
				if err := exp.Flush(table, capturer.StatsWithKernel(p.Stats(), src)); err != nil {
					log.Warn("send batch", "err", err)
				}
			},
		}
	}

	var runErr error
	if o.read != "" && o.readsStream() {
		// A pipe or FIFO: its packets, however few, and the statistics go
		// out as they come, and a signal stops it cleanly, as it stops a
		// live capture (exit status 0). src stays nil: a stream has no
		// kernel counters.
		stream, err := capturer.OpenStream(ctx, o.openStream)
		if err != nil {
			if ctx.Err() != nil {
				log.Info("stopped before the capture began", "source", o.sourceName())
				return nil
			}
			return fmt.Errorf("open capture from %s: %w", o.sourceName(), err)
		}
		defer stream.Close()
		p.Filter = spec
		if err := o.startClient(ctx, client, "", 0, spec); err != nil {
			return err
		}
		runErr = capturer.ReadStream(ctx, stream, p, periodic)
	} else if o.read != "" {
		if o.read == "-" {
			src, err = capture.OpenReader(o.stdin)
		} else {
			src, err = capture.OpenFile(o.read)
		}
		if err != nil {
			return err
		}
		defer src.Close()
		p.Filter = spec
		if err := o.startClient(ctx, client, "", 0, spec); err != nil {
			return err
		}
		runErr = capturer.ReadFile(ctx, src, p, periodic)
	} else {
		src, err = o.openLive(spec, log)
		if err != nil {
			return err
		}
		defer src.Close()
		if addrs, err := capture.InterfaceAddrs(o.iface); err == nil {
			table.Local = capturer.LocalSet(addrs)
		}
		if err := o.startClient(ctx, client, o.iface, capture.LiveLinkType(o.iface), spec); err != nil {
			return err
		}
		log.Info("capture started", "interface", o.iface, "filter", spec.String(), "uid", os.Getuid())
		codepages.LogRelease(log) // what runs from now on is the capture loop
		runErr = capturer.ReadLive(ctx, src, p, time.Now, periodic)
	}
	stats := capturer.StatsWithKernel(p.Stats(), src)
	if out != nil {
		if err := out.Flush(); err != nil {
			return fmt.Errorf("write flows: %w", err)
		}
	} else {
		// The last batch: every flow ended at shutdown or end of file.
		// A file read to its end says so, unless a signal came (standard
		// input may end because its writer was interrupted too): the API
		// server then counts this instance as a finished import, not a
		// lost capturer. Wait (bounded) until the API server has
		// committed it.
		flush := exp.Flush
		if o.read != "" && runErr == nil && ctx.Err() == nil {
			flush = exp.FlushDone
		}
		if err := flush(table, stats); err != nil {
			log.Warn("send batch", "err", err)
		}
		cctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		err := client.Close(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("flush to the API server: %w", err)
		}
	}
	if o.printStats {
		if err := writeStats(o.stderr, stats); err != nil {
			return err
		}
	}
	log.Info("capture done", "packets", stats.Packets, "flows", stats.Flows, "non_ip", stats.NonIP,
		"decode_errors", stats.DecodeErrors, "kernel_drops", stats.KernelDrops)
	if runErr != nil {
		return fmt.Errorf("read %s: %w (%d packets before it were counted)", o.sourceName(), runErr, stats.Packets)
	}
	return nil
}

// startClient starts the IPC client (nil: nothing to do) with a hello
// describing this capture.
func (o *options) startClient(ctx context.Context, c *ipc.Client, iface string, linkType uint16, spec capfilter.Spec) error {
	if c == nil {
		return nil
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	host, _ := os.Hostname()
	v, _, _ := version.Info()
	if iface == "" {
		iface = "file:" + o.read
	}
	c.Hello = ipc.Hello{
		InstanceID: hex.EncodeToString(id[:]),
		Hostname:   host,
		Software:   "lightshark-capturer " + v,
		Interface:  iface,
		LinkType:   linkType,
		Filter:     spec.String(),
		StartTime:  time.Now(),
	}
	// The client outlives ctx: at shutdown it still delivers the last batch
	// (Close waits for it, bounded).
	if err := c.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start IPC client: %w", err)
	}
	return nil
}

// readsStream reports whether --read names a stream rather than a file:
// standard input that is not a regular file (a pipe, a terminal), or a path
// to a FIFO or a device. A stream's writer may pause for any time.
func (o *options) readsStream() bool {
	if o.read == "-" {
		f, ok := o.stdin.(interface{ Stat() (os.FileInfo, error) })
		if !ok {
			return true
		}
		fi, err := f.Stat()
		return err != nil || !fi.Mode().IsRegular()
	}
	fi, err := os.Stat(o.read)
	return err == nil && !fi.Mode().IsRegular() && !fi.IsDir()
}

// openStream opens the stream --read names; opening a FIFO waits for a
// writer. Standard input stays open after the stream's Close.
func (o *options) openStream() (io.ReadCloser, error) {
	if o.read != "-" {
		return os.Open(o.read)
	}
	if f, ok := o.stdin.(*os.File); ok {
		return keepOpen{f}, nil
	}
	return io.NopCloser(o.stdin), nil
}

// keepOpen is standard input as a stream's input: Close leaves it open.
// Unlike io.NopCloser's, it keeps the file's SyscallConn, with which the
// stream learns whether a read would wait.
type keepOpen struct{ *os.File }

func (keepOpen) Close() error { return nil }

func (o *options) sourceName() string {
	if o.read == "-" {
		return "standard input"
	}
	if o.read != "" {
		return o.read
	}
	return o.iface
}

func (o *options) openLive(spec capfilter.Spec, log *slog.Logger) (capture.Source, error) {
	if o.iface == "" {
		ifc, err := capture.DefaultInterface()
		if err != nil {
			return nil, fmt.Errorf("no --interface given and none detected: %w", err)
		}
		o.iface = ifc
		log.Info("capturing on detected interface", "interface", ifc)
	}
	lt := capture.LiveLinkType(o.iface)
	prog, err := spec.Compile(lt, uint32(o.cfg.Snaplen))
	if err != nil {
		return nil, fmt.Errorf("compile filter %q: %w", spec.String(), err)
	}
	src, err := capture.OpenLive(capture.LiveConfig{
		Interface:   o.iface,
		Snaplen:     o.cfg.Snaplen,
		RingBytes:   int(o.cfg.RingSize),
		Promiscuous: o.cfg.Promiscuous,
		Filter:      prog,
	})
	if err != nil {
		return nil, err
	}
	// The socket is open and filtered: nothing privileged is left to do.
	if err := privdrop.Drop(o.cfg.CapturerUser); err != nil {
		src.Close()
		return nil, fmt.Errorf("drop privileges: %w", err)
	}
	return src, nil
}

func writeStats(w io.Writer, s record.CaptureStats) error {
	enc := json.NewEncoder(w)
	return enc.Encode(struct {
		Stats record.CaptureStats `json:"stats"`
	}{s})
}

// softMemoryLimit is the capturer's default Go memory limit for a table of
// maxFlows flows.
func softMemoryLimit(maxFlows int) int64 {
	return 8<<20 + int64(maxFlows)*256
}
