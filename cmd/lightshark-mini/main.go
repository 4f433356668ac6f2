// Command lightshark-mini is the all-in-one command with the original
// tool's flags: it runs lightshark-apiserver and lightshark-capturer as two
// processes with separate privileges and supervises them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/lightshark-dev/lightshark-mini/pkg/capfilter"
	"github.com/lightshark-dev/lightshark-mini/pkg/cli"
	"github.com/lightshark-dev/lightshark-mini/pkg/codepages"
	"github.com/lightshark-dev/lightshark-mini/pkg/config"
	"github.com/lightshark-dev/lightshark-mini/pkg/logging"
	"github.com/lightshark-dev/lightshark-mini/pkg/supervisor"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel() // the children stop in order: the capturer flushes, the API server commits
		s := <-sigs
		fmt.Fprintf(os.Stderr, "lightshark-mini: second %v: exiting at once\n", s)
		os.Exit(130) // the children get SIGKILL from the kernel (parent-death signal)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	if err != nil {
		cli.PrintError(os.Stderr, "lightshark-mini", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := &cobra.Command{
		Use:   "lightshark-mini [-i IFACE] [-p PORT] [--db-path FILE] [filters] [flags]",
		Short: "Watch a container's network: live flows, history in SQLite, a REST API",
		Long: `lightshark-mini captures the traffic of the network namespace it runs in (a
container's, as a sidecar), aggregates it into exact bidirectional flows, keeps
their history in SQLite and serves it over HTTP: a dashboard at /, and
/api/health, /api/live, /api/stats, /api/history, /api/flows, /api/series,
/api/stream (WebSocket) and /metrics.

It runs two processes with separate privileges. Started as root (or with
CAP_SETUID, CAP_SETGID and CAP_NET_RAW), it runs lightshark-apiserver as
--api-user with no capability, and lightshark-capturer as --capturer-user with
CAP_NET_RAW alone, which the capturer drops once its socket is open. Started as
another user, it runs both as that user (live capture then needs CAP_NET_RAW).
A child that dies is restarted; SIGINT or SIGTERM stops both after the last
batch of flows is committed (a second signal exits at once).`,
		Example: `  lightshark-mini --interface eth0
  curl -s localhost:3000/api/health
  lightshark-mini -i eth0 --filter-port 443 --listen 127.0.0.1:3000 --db-path /var/lib/lightshark/traffic.db
  lightshark-mini -c /etc/lightshark.yaml --print-config`,
	}
	var read string
	cli.Bind(cmd, config.Mini, func(ctx context.Context, cfg *config.Config) error {
		return supervise(ctx, cfg, read, stderr)
	})
	cmd.Flags().StringVarP(&read, "read", "r", "", "import this pcap or pcapng file instead of capturing live, then keep serving its flows (- reads a stream from standard input)")
	cli.SetGroup(cmd.Flags(), "read", config.GroupCapture)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd.ExecuteContext(ctx)
}

func supervise(ctx context.Context, cfg *config.Config, read string, stderr io.Writer) error {
	log, err := logging.New(stderr, cfg.LogFormat, cfg.Quiet)
	if err != nil {
		return err
	}
	if err := preflight(cfg, read); err != nil {
		return err
	}
	token, err := cfg.ReadToken() // read here: the API server's user may not read the file
	if err != nil {
		return err
	}
	capPath, err := supervisor.FindBinary("lightshark-capturer")
	if err != nil {
		return err
	}
	apiPath, err := supervisor.FindBinary("lightshark-apiserver")
	if err != nil {
		return err
	}

	capUID, capGID, _ := config.ParseUser(cfg.CapturerUser)
	apiUID, apiGID, _ := config.ParseUser(cfg.APIUser)
	split := supervisor.CanSwitchUser()
	api := supervisor.Child{Name: "apiserver", Path: apiPath, Args: apiserverArgs(cfg), Env: childEnv("apiserver")}
	capt := supervisor.Child{Name: "capturer", Path: capPath, Args: capturerArgs(cfg), Env: childEnv("capturer"),
		AmbientCaps: []uintptr{unix.CAP_NET_RAW}}
	if read != "" {
		// An import needs no capability; it ends when the file does.
		capt.Args = append(capt.Args, "--read", read)
		capt.AmbientCaps, capt.OneShot = nil, true
		if read == "-" {
			capt.Stdin = os.Stdin // a stream, e.g. tcpdump -U -w - | lightshark-mini --read -
		}
	}
	if token != "" {
		api.Env = append(api.Env, "LIGHTSHARK_API_TOKEN="+token)
	}
	sockDir := filepath.Dir(cfg.Socket)
	if err := ownSocketDir(sockDir, filepath.Base(cfg.Socket)); err != nil {
		return err
	}
	if split {
		api.Cred = &syscall.Credential{Uid: uint32(apiUID), Gid: uint32(apiGID), NoSetGroups: false}
		// The capturer joins the API server's group to reach the socket
		// (mode 0660); the server checks its uid too (SO_PEERCRED).
		capt.Cred = &syscall.Credential{Uid: uint32(capUID), Gid: uint32(capGID), Groups: []uint32{uint32(apiGID)}}
		api.Args = append(api.Args, "--capturer-uid", strconv.Itoa(capUID))
		if err := supervisor.PrepareSocketDir(sockDir, apiUID, apiGID, 0o750); err != nil {
			return fmt.Errorf("socket directory: %w", err)
		}
		if err := prepareDBDir(cfg.DBPath, apiUID, apiGID); err != nil {
			return err
		}
		if read != "" && read != "-" && !reachable(read, capUID, capGID, 0o4) {
			return fmt.Errorf("--read: the capturer runs as uid %d, which cannot read %s: make it readable (or choose --capturer-user)", capUID, read)
		}
		log.Info("privilege split", "apiserver_uid", apiUID, "capturer_uid", capUID, "capturer_caps", "CAP_NET_RAW until its socket is open")
	} else {
		if err := supervisor.PrepareSocketDir(sockDir, os.Getuid(), os.Getgid(), 0o700); err != nil {
			return fmt.Errorf("socket directory: %w", err)
		}
		switch {
		case read != "" || supervisor.HasCap(unix.CAP_NET_RAW):
		case fileCapNetRaw(capPath):
			// The capturer's binary carries the capability itself
			// (setcap cap_net_raw+ep): there is nothing to pass on.
			capt.AmbientCaps = nil
		default:
			return errors.New("live capture needs CAP_NET_RAW: run as root, or grant it " +
				"(setcap cap_net_raw+ep lightshark-capturer, or --cap-add NET_RAW with user 0 in a container); " +
				"to import a capture file use --read FILE")
		}
		if read == "" {
			log.Warn("not root: both processes run as this user; the API server is not separated from the capture privilege",
				"uid", os.Getuid())
		} else {
			log.Info("not root: both processes run as this user", "uid", os.Getuid())
		}
	}

	s := &supervisor.Supervisor{
		// The capturer is listed last: it is stopped first, flushes its
		// last batch, and the API server commits it before it stops.
		Children:  []supervisor.Child{api, capt},
		Logger:    log,
		LogFormat: cfg.LogFormat,
		Stderr:    stderr,
		// The capturer waits up to 4 s for its last batch to be
		// committed; the whole stop stays within 5 s when the API server
		// answers.
		StopTimeout: 4500 * time.Millisecond,
	}
	if read != "" {
		log.Info("importing", "file", read, "listen", cfg.ListenAddr(), "db_path", cfg.DBPath,
			"note", "the API keeps serving the file's flows after the import, until interrupted")
	} else {
		log.Info("starting", "listen", cfg.ListenAddr(), "db_path", cfg.DBPath, "interface", ifaceName(cfg))
	}
	codepages.LogRelease(log) // from here on the supervisor waits and relays
	return s.Run(ctx)
}

// preflight checks what would otherwise make a child fail at start, so
// that the error is one line naming the setting.
func preflight(cfg *config.Config, read string) error {
	if read != "" {
		if cfg.Interface != "" {
			return errors.New("--read and --interface exclude each other")
		}
		if read != "-" { // standard input: the capturer says if it is no capture
			if _, err := os.Stat(read); err != nil {
				return fmt.Errorf("--read: %w", err)
			}
		}
	}
	if _, err := capfilter.FromConfig(cfg); err != nil {
		return err
	}
	if cfg.Interface != "" && cfg.Interface != "any" {
		if _, err := net.InterfaceByName(cfg.Interface); err != nil {
			return cfg.Errorf("interface", "no interface %q (available: %s)", cfg.Interface, interfaceNames())
		}
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr())
	if err != nil {
		key := "port"
		if cfg.ListenAddr() == cfg.Listen {
			key = "listen"
		}
		var se *os.SyscallError
		if errors.As(err, &se) && errors.Is(se.Err, syscall.EADDRINUSE) {
			return cfg.Errorf(key, "%s is already in use", cfg.ListenAddr())
		}
		return cfg.Errorf(key, "%v", err)
	}
	ln.Close()
	return nil
}

func interfaceNames() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return err.Error()
	}
	names := make([]string, len(ifs))
	for i, f := range ifs {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

func ifaceName(cfg *config.Config) string {
	if cfg.Interface == "" {
		return "(default route's)"
	}
	return cfg.Interface
}

// ownSocketDir refuses a socket directory that holds anything but the
// socket: lightshark-mini sets its owner and mode, which must never happen
// to a shared directory such as /run or /tmp.
func ownSocketDir(dir, sock string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	for _, e := range ents {
		if e.Name() != sock {
			return fmt.Errorf("socket: %s holds other files (%s): give --socket a path in a directory of its own, "+
				"e.g. /run/lightshark/ipc.sock, whose owner and mode lightshark-mini sets", dir, e.Name())
		}
	}
	return nil
}

// prepareDBDir makes sure the API server's user can create the database
// and its -wal and -shm files: the directory is created for it when
// missing; an existing one must already be writable by it.
func prepareDBDir(dbPath string, uid, gid int) error {
	dir := filepath.Dir(dbPath)
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("db_path: %w", err)
		}
		return os.Chown(dir, uid, gid)
	}
	if err != nil {
		return fmt.Errorf("db_path: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("db_path: %s is not a directory", dir)
	}
	if !allowed(fi, uid, gid, 0o3) {
		return fmt.Errorf("db_path: the API server runs as uid %d, which cannot create files in %s: "+
			"choose a --db-path in a directory it can write, e.g. /var/lib/lightshark/traffic.db, "+
			"or give the directory to it (chown %d:%d %s)", uid, dir, uid, gid, dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("db_path: %w", err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(dbPath + suffix); err == nil && !allowed(fi, uid, gid, 0o6) {
			return fmt.Errorf("db_path: the API server runs as uid %d, which cannot write %s: give it the file (chown %d:%d %s)",
				uid, dbPath+suffix, uid, gid, dbPath+suffix)
		}
	}
	if !reachable(abs, uid, gid, 0o1) {
		return fmt.Errorf("db_path: the API server runs as uid %d, which cannot reach %s "+
			"(a directory above it is closed to it): choose a --db-path it can reach", uid, dir)
	}
	return nil
}

// reachable says whether uid can open path with the permission bits want:
// every directory above it must let it search.
func reachable(path string, uid, gid int, want os.FileMode) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	if fi, err := os.Stat(abs); err != nil || !allowed(fi, uid, gid, want) {
		return false
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && !allowed(fi, uid, gid, 0o1) {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// allowed says whether uid (with primary group gid) has the permission
// bits want (0o1 search, 0o3 write and search) on the file, by its mode
// (ACLs are not read).
func allowed(fi os.FileInfo, uid, gid int, want os.FileMode) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	m := fi.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return (m>>6)&want == want
	case int(st.Gid) == gid:
		return (m>>3)&want == want
	}
	return m&want == want
}

// childEnv is a child's environment: no LIGHTSHARK_* settings (every
// setting is passed as a flag, and the child may not read the config
// file), but the Go runtime's tuning, with the memory limit split.
func childEnv(name string) []string {
	var env []string
	for _, kv := range supervisor.BaseEnv() {
		if !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			env = append(env, kv)
		}
	}
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		if limit, err := config.ParseSize(strings.TrimSuffix(v, "B")); err == nil {
			// The budget is the container's: the API server (SQLite
			// cache, HTTP) gets the larger share, the capturer (flow
			// table, ring outside the Go heap) less, this process the rest.
			share := map[string]int64{"apiserver": 50, "capturer": 35}[name]
			env = append(env, fmt.Sprintf("GOMEMLIMIT=%d", limit*share/100))
		}
	}
	return env
}

func capturerArgs(cfg *config.Config) []string {
	return childArgs(cfg, config.Capturer, map[string]bool{"capturer_user": true})
}

func apiserverArgs(cfg *config.Config) []string {
	return childArgs(cfg, config.APIServer, map[string]bool{"port": true, "listen": true, "api_token_file": true})
}

// childArgs passes every setting the child takes, as flags, except skip;
// the API server's address is passed resolved.
func childArgs(cfg *config.Config, cmd config.Command, skip map[string]bool) []string {
	var args []string
	for _, f := range config.Fields(cmd) {
		if f.Flag == "" || skip[f.Key] || f.Commands&config.Mini == 0 {
			continue
		}
		v := f.Value(cfg)
		switch f.Kind {
		case config.Bool:
			if v == "true" {
				args = append(args, "--"+f.Flag)
			}
			continue
		case config.List, config.IntList:
			if v == "" {
				continue
			}
		}
		if v == "" && f.Default() == "" {
			continue
		}
		args = append(args, "--"+f.Flag+"="+v)
	}
	if cmd == config.APIServer {
		args = append(args, "--listen="+cfg.ListenAddr())
	}
	return args
}

// fileCapNetRaw says whether the program at path carries CAP_NET_RAW in
// its permitted file capabilities (setcap cap_net_raw+ep).
func fileCapNetRaw(path string) bool {
	// struct vfs_cap_data: magic_etc, then {permitted, inheritable} for
	// capabilities 0-31 and 32-63.
	var b [24]byte
	n, err := unix.Getxattr(path, "security.capability", b[:])
	if err != nil || n < 12 {
		return false
	}
	permitted := uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24
	return permitted&(1<<unix.CAP_NET_RAW) != 0
}
