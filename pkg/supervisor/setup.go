package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// defaultPath is the PATH given to children when the supervisor has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// passedEnv are the variables BaseEnv copies from the supervisor's
// environment when set: the time zone and the Go runtime's knobs.
var passedEnv = []string{"TZ", "GOGC", "GODEBUG", "GOMAXPROCS", "GOTRACEBACK"}

// BaseEnv returns the environment a Child with a nil Env gets: PATH (a
// default one when the supervisor has none), plus TZ, GOGC, GODEBUG,
// GOMAXPROCS and GOTRACEBACK when they are set. It returns a new slice, to
// which the caller may append.
//
// Two kinds of variables are left out on purpose. LIGHTSHARK_*: the
// supervisor resolves its configuration and passes it to each child as
// flags, and LIGHTSHARK_API_TOKEN must not reach the capturer (give it to
// the API server alone, in its Env or better as --api-token-file).
// GOMEMLIMIT: it is the whole container's budget, shared by the children;
// split it and give each child its part in its Env.
func BaseEnv() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	env := []string{"PATH=" + path}
	for _, k := range passedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// FindBinary returns the path of the program name: the file of that name
// in the directory of the running executable (where the image installs the
// three binaries together), else the first match in $PATH. The error names
// both places.
func FindBinary(name string) (string, error) {
	exe, exeErr := os.Executable()
	var dir string
	if exeErr == nil {
		dir = filepath.Dir(exe)
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	// A match relative to the working directory (exec.ErrDot) is refused.
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if exeErr != nil {
		return "", fmt.Errorf("%s not found: not in $PATH (%s), and the executable's own directory is unknown: %w",
			name, os.Getenv("PATH"), exeErr)
	}
	return "", fmt.Errorf("%s not found beside %s nor in $PATH (%s)", name, exe, os.Getenv("PATH"))
}

// PrepareSocketDir creates dir (and its missing parents, mode 0755) unless
// it exists, then sets its owner to uid:gid (-1 keeps one unchanged) and
// its mode to mode (which may include os.ModeSetgid). dir itself must not
// be a symbolic link. Changing the owner needs CAP_CHOWN.
//
// For the socket the API server creates in it and the capturer dials:
// owner the API server's uid, group the capturer's gid, mode
// 0750|os.ModeSetgid. The set-group-ID bit gives the socket the
// directory's group, so the API server's default --socket-mode 0660 lets
// the capturer connect (and --capturer-uid admits it).
func PrepareSocketDir(dir string, uid, gid int, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	// Created private; opened to others only once owned right.
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create socket directory: %w", err)
	}
	// O_NOFOLLOW: never chown the target of a link planted in its place.
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		if fi, lerr := os.Lstat(dir); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("socket directory %s is a symbolic link", dir)
		}
		if errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("socket directory %s is not a directory", dir)
		}
		return fmt.Errorf("open socket directory: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	// Mode first, owner second: once the directory is given away, a root
	// without CAP_FOWNER (a container keeping only what it needs) may no
	// longer change its mode. Nothing is changed that is already right.
	if fi.Mode().Perm() != mode.Perm() {
		if err := f.Chmod(mode); err != nil {
			return fmt.Errorf("chmod socket directory: %w", err)
		}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || (uid >= 0 && int(st.Uid) != uid) || (gid >= 0 && int(st.Gid) != gid) {
		if err := f.Chown(uid, gid); err != nil {
			if errors.Is(err, syscall.EPERM) {
				return fmt.Errorf("set owner %d:%d: %w (needs CAP_CHOWN)", uid, gid, err)
			}
			return fmt.Errorf("set owner %d:%d: %w", uid, gid, err)
		}
	}
	return nil
}
