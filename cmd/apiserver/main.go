// Command lightshark-apiserver is the unprivileged process that owns the
// flow history (SQLite) and every network-facing endpoint: it listens on
// the Unix socket the capturer dials, commits the capturer's batches and
// serves the HTTP API. It needs no capability.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lightshark-dev/lightshark-mini/pkg/apiserver"
	"github.com/lightshark-dev/lightshark-mini/pkg/config"
	"github.com/lightshark-dev/lightshark-mini/pkg/version"
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "lightshark-apiserver: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	socket       string
	socketMode   string
	capturerUIDs []int
	dbPath       string
	port         int
	listen       string
	retention    int
	maxDBSize    string
	aggWindow    int
	tokenFile    string
	allowCIDRs   []string
	allowOrigins []string
	quiet        bool
	logFormat    string
	showVersion  bool
	stdout       io.Writer
	stderr       io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &options{stdout: stdout, stderr: stderr}
	cmd := &cobra.Command{
		Use:   "lightshark-apiserver --socket PATH --db-path FILE [-p PORT | --listen ADDR] [flags]",
		Short: "Store the capturer's flows in SQLite and serve the HTTP API",
		Long: `lightshark-apiserver listens on a Unix socket for the capturer
(lightshark-capturer --socket PATH), commits each batch of flows to SQLite
(WAL) before acknowledging it, and serves the REST API, the /api/stream
WebSocket and Prometheus /metrics. It runs unprivileged with no capability.`,
		Example:       "  lightshark-apiserver --socket /run/lightshark/ipc.sock --db-path /var/lib/lightshark/traffic.db -p 3000",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.showVersion {
				fmt.Fprintln(o.stdout, version.String("lightshark-apiserver"))
				return nil
			}
			return o.run(cmd.Context(), cmd)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&o.socket, "socket", "/run/lightshark/ipc.sock", "Unix socket the capturer dials (created by this server)")
	f.StringVar(&o.socketMode, "socket-mode", "0660", "permissions of the socket")
	f.IntSliceVar(&o.capturerUIDs, "capturer-uid", nil, "uid allowed to connect besides this server's own (repeatable)")
	f.StringVar(&o.dbPath, "db-path", "traffic.db", "SQLite database file")
	f.IntVarP(&o.port, "port", "p", 3000, "HTTP port (all addresses); --listen overrides")
	f.StringVar(&o.listen, "listen", "", "HTTP address, e.g. 127.0.0.1:3000")
	f.IntVar(&o.retention, "data-retention", 86400, "seconds of history to keep")
	f.StringVar(&o.maxDBSize, "max-db-size", "256MiB", "bound of the database file and its WAL")
	f.IntVar(&o.aggWindow, "aggregation-window", 0, "seconds per stored counter window of each flow (0: none)")
	f.StringVar(&o.tokenFile, "api-token-file", "", "file holding the bearer token the API requires (LIGHTSHARK_API_TOKEN also works)")
	f.StringSliceVar(&o.allowCIDRs, "allow-cidr", nil, "client networks allowed to use the API (default: all)")
	f.StringSliceVar(&o.allowOrigins, "allow-origin", nil, "browser origins allowed (CORS and the WebSocket)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print errors only")
	f.BoolVar(&o.showVersion, "version", false, "print version and exit")
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd.ExecuteContext(ctx)
}

func (o *options) run(ctx context.Context, cmd *cobra.Command) error {
	level := slog.LevelInfo
	if o.quiet {
		level = slog.LevelError
	}
	var h slog.Handler
	switch o.logFormat {
	case "text":
		h = slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: level})
	case "json":
		h = slog.NewJSONHandler(o.stderr, &slog.HandlerOptions{Level: level})
	default:
		return fmt.Errorf("--log-format: %q is not text or json", o.logFormat)
	}
	log := slog.New(h)

	cfg := apiserver.Config{Socket: o.socket, CapturerUIDs: o.capturerUIDs, DBPath: o.dbPath,
		AllowOrigins: o.allowOrigins, Logger: log}
	mode, err := strconv.ParseUint(o.socketMode, 8, 32)
	if err != nil || mode > 0o777 {
		return fmt.Errorf("--socket-mode: %q is not an octal mode", o.socketMode)
	}
	cfg.SocketMode = os.FileMode(mode)
	cfg.Listen = fmt.Sprintf(":%d", o.port)
	if o.port < 1 || o.port > 65535 {
		return fmt.Errorf("--port: %d is not a port (1-65535)", o.port)
	}
	if o.listen != "" {
		cfg.Listen = o.listen
	}
	if o.retention < 1 {
		return fmt.Errorf("--data-retention: %d is not a positive number of seconds", o.retention)
	}
	cfg.Retention = time.Duration(o.retention) * time.Second
	if o.aggWindow < 0 {
		return fmt.Errorf("--aggregation-window: %d is negative", o.aggWindow)
	}
	cfg.AggregationWindow = time.Duration(o.aggWindow) * time.Second
	size, err := config.ParseSize(o.maxDBSize)
	if err != nil {
		return fmt.Errorf("--max-db-size: %w", err)
	}
	cfg.MaxDBSize = size
	for _, c := range o.allowCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return fmt.Errorf("--allow-cidr: %q is not an address or CIDR", c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		cfg.AllowCIDRs = append(cfg.AllowCIDRs, p.Masked())
	}
	cfg.Token = os.Getenv("LIGHTSHARK_API_TOKEN")
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("--api-token-file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
		if cfg.Token == "" {
			return fmt.Errorf("--api-token-file: %s is empty", o.tokenFile)
		}
	}

	srv, err := apiserver.Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(cctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
