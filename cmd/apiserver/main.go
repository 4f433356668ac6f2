// Command lightshark-apiserver is the unprivileged process that owns the
// flow history (SQLite) and every network-facing endpoint: it listens on
// the Unix socket the capturer dials, commits the capturer's batches and
// serves the HTTP API. It needs no capability.
package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lightshark-dev/lightshark-mini/pkg/apiserver"
	"github.com/lightshark-dev/lightshark-mini/pkg/cli"
	"github.com/lightshark-dev/lightshark-mini/pkg/codepages"
	"github.com/lightshark-dev/lightshark-mini/pkg/config"
	"github.com/lightshark-dev/lightshark-mini/pkg/logging"
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		cli.PrintError(os.Stderr, "lightshark-apiserver", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := &cobra.Command{
		Use:   "lightshark-apiserver [--socket PATH] [--db-path FILE] [-p PORT | --listen ADDR] [flags]",
		Short: "Store the capturer's flows in SQLite and serve the HTTP API",
		Long: `lightshark-apiserver listens on a Unix socket for the capturer
(lightshark-capturer --socket PATH), commits each batch of flows to SQLite
(WAL) before acknowledging it, and serves the REST API, the /api/stream
WebSocket, Prometheus /metrics and the dashboard at /. It runs unprivileged
with no capability; only its own uid and the --capturer-uid list may connect
to the socket.`,
		Example: "  lightshark-apiserver --socket /run/lightshark/ipc.sock --capturer-uid 65534 \\\n" +
			"    --db-path /var/lib/lightshark/traffic.db --listen 127.0.0.1:3000",
	}
	cli.Bind(cmd, config.APIServer, func(ctx context.Context, cfg *config.Config) error {
		return serve(ctx, cfg, stderr)
	})
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd.ExecuteContext(ctx)
}

func serve(ctx context.Context, c *config.Config, stderr io.Writer) error {
	log, err := logging.New(stderr, c.LogFormat, c.Quiet)
	if err != nil {
		return err
	}
	cfg := apiserver.Config{
		Socket:            c.Socket,
		SocketMode:        os.FileMode(c.SocketMode),
		CapturerUIDs:      c.CapturerUID,
		DBPath:            c.DBPath,
		Listen:            c.ListenAddr(),
		Retention:         time.Duration(c.DataRetention) * time.Second,
		MaxDBSize:         c.MaxDBSize,
		AggregationWindow: time.Duration(c.AggregationWindow) * time.Second,
		AllowOrigins:      c.AllowOrigin,
		MaxStreamClients:  c.MaxStreamClients,
		Logger:            log,
	}
	if c.DataRetention == 0 {
		cfg.Retention = -1 // keep rows until the size bound needs their room
	}
	for _, s := range c.AllowCIDR {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return c.Errorf("allow_cidr", "%v", err)
		}
		cfg.AllowCIDRs = append(cfg.AllowCIDRs, p)
	}
	if cfg.Token, err = c.ReadToken(); err != nil {
		return err
	}

	srv, err := apiserver.Start(ctx, cfg)
	if err != nil {
		return err
	}
	// Started: the code that ran to get here need not stay resident.
	codepages.LogRelease(log)
	<-ctx.Done()
	log.Info("shutting down")
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(cctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
