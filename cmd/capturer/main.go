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
	"github.com/lightshark-dev/lightshark-mini/pkg/config"
	"github.com/lightshark-dev/lightshark-mini/pkg/flow"
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
		fmt.Fprintf(os.Stderr, "lightshark-capturer: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	iface          string
	read           string
	output         string
	socket         string
	flushInterval  time.Duration
	filterPort     string
	filterIP       string
	filterProto    string
	maxFlows       int
	connTimeout    int
	closedTimeout  int
	sampleRate     int
	snaplen        int
	ringSize       string
	promiscuous    bool
	quiet          bool
	user           string
	printStats     bool
	showVersion    bool
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
		Use:   "lightshark-capturer (-i IFACE | --read FILE) [flags]",
		Short: "Capture packets and aggregate them into bidirectional flows",
		Long: `lightshark-capturer reads packets from a network interface (AF_PACKET,
needs CAP_NET_RAW) or from a pcap/pcapng file, decodes them and aggregates them
into exact bidirectional flows (per-direction packets and bytes, TCP history
and state, Community ID).

Offline (forensic) mode prints every flow of a file as one JSON object per line
and exits:

  lightshark-capturer --read trace.pcap --output jsonl
  tcpdump -w - | lightshark-capturer --read - --output jsonl

Live, --output jsonl prints each flow as it ends (idle, closed, evicted) and the
remaining ones at SIGINT/SIGTERM:

  lightshark-capturer -i eth0 --output jsonl --filter-port 443`,
		Example:       "  lightshark-capturer --read trace.pcapng --output jsonl | jq -c 'select(.state==\"REJ\")'",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.showVersion {
				fmt.Fprintln(o.stdout, version.String("lightshark-capturer"))
				return nil
			}
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&o.iface, "interface", "i", "", `interface to capture on, or "any" (default: the default route's interface)`)
	f.StringVarP(&o.read, "read", "r", "", `read packets from a pcap or pcapng file ("-" for standard input) instead of an interface`)
	f.StringVar(&o.output, "output", "", `write flows to standard output in this format: "jsonl"`)
	f.StringVar(&o.socket, "socket", "", "send flows to the API server listening on this Unix socket")
	f.DurationVar(&o.flushInterval, "flush-interval", time.Second, "with --socket: how often updated flows are sent")
	f.StringVar(&o.filterPort, "filter-port", "", "only traffic with this TCP/UDP/SCTP port on either side")
	f.StringVar(&o.filterIP, "filter-ip", "", "only traffic to or from this address or CIDR (IPv4 or IPv6)")
	f.StringVar(&o.filterProto, "filter-protocol", "", "only this protocol: tcp, udp, icmp, icmpv6, sctp or a number")
	f.IntVar(&o.maxFlows, "max-flows", flow.DefaultMaxFlows, "flows held at once; beyond it the longest-idle flow is exported early")
	f.IntVar(&o.connTimeout, "connection-timeout", int(flow.DefaultIdleTimeout/time.Second), "seconds without a packet after which a flow ends")
	f.IntVar(&o.closedTimeout, "closed-timeout", int(flow.DefaultClosedTimeout/time.Second), "seconds a TCP flow lingers after FIN or RST")
	f.IntVar(&o.sampleRate, "sample-rate", 1, "keep the metadata of 1 in N packets (packet history)")
	f.IntVar(&o.snaplen, "snaplen", capture.DefaultSnaplen, "bytes captured per packet (byte counts always use the original length)")
	f.StringVar(&o.ringSize, "ring-size", "2MiB", "size of the kernel capture ring (counts against the memory budget)")
	f.BoolVar(&o.promiscuous, "promiscuous", false, "put the interface in promiscuous mode (not needed in a sidecar)")
	f.StringVar(&o.user, "user", "65534", "after opening the socket as root, switch to this uid[:gid] (like tcpdump -Z)")
	f.BoolVar(&o.printStats, "stats", false, "print capture statistics as JSON on standard error at the end")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print errors only")
	f.BoolVar(&o.showVersion, "version", false, "print version and exit")
	return cmd
}

func (o *options) run(ctx context.Context) error {
	level := slog.LevelInfo
	if o.quiet {
		level = slog.LevelError
	}
	log := slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: level}))

	spec, err := capfilter.Parse(o.filterPort, o.filterIP, o.filterProto)
	if err != nil {
		return err
	}
	switch {
	case o.maxFlows < 1:
		return fmt.Errorf("--max-flows: %d is not a positive number", o.maxFlows)
	case o.connTimeout < 1:
		return fmt.Errorf("--connection-timeout: %d is not a positive number of seconds", o.connTimeout)
	case o.closedTimeout < 0:
		return fmt.Errorf("--closed-timeout: %d is negative", o.closedTimeout)
	case o.sampleRate < 1:
		return fmt.Errorf("--sample-rate: %d is not a positive number", o.sampleRate)
	case o.output != "" && o.output != "jsonl":
		return fmt.Errorf("--output: %q is not a known format (jsonl)", o.output)
	case o.read != "" && o.iface != "":
		return errors.New("--read and --interface exclude each other")
	case o.output == "" && o.socket == "":
		return errors.New("nowhere to send flows: give --socket PATH (the API server) or --output jsonl")
	case o.output != "" && o.socket != "":
		return errors.New("--output and --socket exclude each other")
	case o.flushInterval < 10*time.Millisecond:
		return fmt.Errorf("--flush-interval: %v is shorter than 10ms", o.flushInterval)
	}

	table := flow.NewTable(o.maxFlows)
	table.IdleTimeout = time.Duration(o.connTimeout) * time.Second
	table.ClosedTimeout = time.Duration(o.closedTimeout) * time.Second
	p := capturer.NewPipeline(table)
	p.SampleRate = o.sampleRate
	var out *capturer.JSONLWriter
	var client *ipc.Client
	var exp *capturer.Exporter
	var periodic *capturer.Periodic
	var src capture.Source
	if o.output != "" {
		out = capturer.NewJSONLWriter(o.stdout)
		table.OnEnd = out.Write
	} else {
		client = &ipc.Client{Path: o.socket, Logger: log}
		exp = capturer.NewExporter(client)
		table.OnEnd = exp.Ended
		p.OnSample = exp.Sample
		periodic = &capturer.Periodic{
			Interval: o.flushInterval,
			Due:      exp.Full,
			Flush: func() {
				if err := exp.Flush(table, capturer.StatsWithKernel(p.Stats(), src)); err != nil {
					log.Warn("send batch", "err", err)
				}
			},
		}
	}

	var runErr error
	if o.read != "" {
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
		runErr = capturer.ReadLive(ctx, src, p, time.Now, periodic)
	}
	stats := capturer.StatsWithKernel(p.Stats(), src)
	if out != nil {
		if err := out.Flush(); err != nil {
			return fmt.Errorf("write flows: %w", err)
		}
	} else {
		// The last batch: every flow ended at shutdown or end of file.
		// Wait (bounded) until the API server has committed it.
		if err := exp.Flush(table, stats); err != nil {
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
	ring, err := config.ParseSize(o.ringSize)
	if err != nil {
		return nil, fmt.Errorf("--ring-size: %w", err)
	}
	lt := capture.LiveLinkType(o.iface)
	prog, err := spec.Compile(lt, uint32(o.snaplen))
	if err != nil {
		return nil, fmt.Errorf("compile filter %q: %w", spec.String(), err)
	}
	src, err := capture.OpenLive(capture.LiveConfig{
		Interface:   o.iface,
		Snaplen:     o.snaplen,
		RingBytes:   int(ring),
		Promiscuous: o.promiscuous,
		Filter:      prog,
	})
	if err != nil {
		return nil, err
	}
	// The socket is open and filtered: nothing privileged is left to do.
	if err := privdrop.Drop(o.user); err != nil {
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
