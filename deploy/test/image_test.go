package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"path"
	"strings"
	"testing"
	"time"
)

// TestImage checks the image the Dockerfile builds: static binaries, no
// shell or package manager, a non-root default user, OCI labels, no
// HEALTHCHECK, and directories owned by the API server's user.
func TestImage(t *testing.T) {
	requireDocker(t)
	ctx := context.Background()

	out, err := docker(ctx, nil, "image", "inspect", productImage)
	if err != nil {
		t.Fatal(err)
	}
	var inspect []struct {
		Size   int64
		Config struct {
			User        string
			Entrypoint  []string
			WorkingDir  string
			Labels      map[string]string
			Healthcheck any
		}
	}
	if err := json.Unmarshal([]byte(out), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("image inspect: %v\n%s", err, out)
	}
	img := inspect[0]
	if img.Config.User != "65532:65532" {
		t.Errorf("default user %q, want 65532:65532", img.Config.User)
	}
	if got := strings.Join(img.Config.Entrypoint, " "); got != "/usr/local/bin/lightshark-mini" {
		t.Errorf("entrypoint %q, want /usr/local/bin/lightshark-mini", got)
	}
	if img.Config.Healthcheck != nil {
		t.Errorf("the image has a HEALTHCHECK (%v): orchestrators probe /api/health instead", img.Config.Healthcheck)
	}
	for _, k := range []string{"title", "description", "source", "licenses", "version", "revision", "documentation"} {
		if img.Config.Labels["org.opencontainers.image."+k] == "" {
			t.Errorf("no label org.opencontainers.image.%s", k)
		}
	}
	if v := img.Config.Labels["org.opencontainers.image.version"]; v != "docker-test" {
		t.Errorf("label version %q, want the build argument docker-test", v)
	}
	t.Logf("image %s: %.1f MiB, of which %d bytes are the stand-in for %s (the real one adds about 2 MiB)",
		productImage, float64(img.Size)/(1<<20), baseSize(t), baseImage)

	// The file system, entry by entry.
	forbidden := map[string]bool{"sh": true, "bash": true, "dash": true, "ash": true, "zsh": true,
		"busybox": true, "apt": true, "apt-get": true, "dpkg": true, "apk": true}
	want := map[string]bool{
		"usr/local/bin/lightshark-capturer":  false,
		"usr/local/bin/lightshark-apiserver": false,
		"usr/local/bin/lightshark-mini":      false,
	}
	dirs := map[string]tar.Header{}
	err = exportImage(productImage, func(h *tar.Header, r io.Reader) error {
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if forbidden[path.Base(name)] {
			t.Errorf("the image holds %s", name)
		}
		if h.Typeflag == tar.TypeDir {
			dirs[name] = *h
		}
		if _, ok := want[name]; ok {
			want[name] = true
			if h.Mode&0o777 != 0o755 || h.Uid != 0 {
				t.Errorf("%s: mode %o uid %d, want 0755 owned by root", name, h.Mode&0o777, h.Uid)
			}
			b, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			checkStatic(t, name, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, found := range want {
		if !found {
			t.Errorf("the image has no %s", name)
		}
	}
	for name, mode := range map[string]int64{"run/lightshark": 0o755, "var/lib/lightshark": 0o750} {
		h, ok := dirs[name]
		switch {
		case !ok:
			t.Errorf("the image has no /%s", name)
		case h.Uid != 65532 || h.Gid != 65532 || h.Mode&0o777 != mode:
			t.Errorf("/%s: %d:%d mode %o, want 65532:65532 mode %o", name, h.Uid, h.Gid, h.Mode&0o777, mode)
		}
	}
	for _, name := range []string{"run", "var", "var/lib", "usr/local/bin"} {
		if h, ok := dirs[name]; ok && h.Uid != 0 {
			t.Errorf("/%s is owned by uid %d, want root", name, h.Uid)
		}
	}

	// No shell: running one fails.
	if out, err := docker(ctx, nil, "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", productImage, "-c", "true"); err == nil {
		t.Errorf("/bin/sh ran in the image: %s", out)
	}
	// The default entrypoint answers --version.
	if out, err := docker(ctx, nil, "run", "--rm", "--network", "none", productImage, "--version"); err != nil || !strings.Contains(out, "lightshark-mini") {
		t.Errorf("lightshark-mini --version: %q, %v", out, err)
	}

	// Non-root by default: a process started with the image's defaults
	// runs as 65532 with no capability (its files land in the directories
	// the image gives that user).
	id, err := docker(ctx, nil, "run", "-d", "--network", "none", "--entrypoint", "/usr/local/bin/lightshark-apiserver", productImage)
	if err != nil {
		t.Fatal(err)
	}
	id = strings.TrimSpace(id)
	defer docker(ctx, nil, "rm", "-f", id)
	pid := waitRunning(t, id)
	s := mustStatus(t, pid)
	if s.Uid[0] != 65532 || s.Uid[1] != 65532 || s.Gid[0] != 65532 {
		t.Errorf("default user: uid %v gid %v, want 65532", s.Uid, s.Gid)
	}
	if s.CapEff|s.CapPrm != 0 {
		t.Errorf("default user holds capabilities: eff %x prm %x", s.CapEff, s.CapPrm)
	}
	time.Sleep(500 * time.Millisecond)
	if out, _ := docker(ctx, nil, "inspect", "-f", "{{.State.Running}}", id); strings.TrimSpace(out) != "true" {
		logs, _ := docker(ctx, nil, "logs", id)
		t.Errorf("the API server with the image's defaults exited: %s", logs)
	}
}

// TestCapabilityFacts shows, in this Docker (runc), the two facts the
// deployments are built on: a non-root container given NET_RAW does not
// get it (no ambient capabilities), and a root capturer given NET_RAW
// alone cannot leave root (it needs SETUID and SETGID too).
func TestCapabilityFacts(t *testing.T) {
	requireDocker(t)
	ctx := context.Background()
	run := func(user string, caps ...string) string {
		args := []string{"run", "--rm", "--network", "none", "--read-only", "--user", user, "--cap-drop", "ALL"}
		for _, c := range caps {
			args = append(args, "--cap-add", c)
		}
		args = append(args, "--entrypoint", "/usr/local/bin/lightshark-capturer", productImage, "-i", "lo", "--output", "jsonl", "--user", "65534")
		out, err := docker(ctx, nil, args...)
		if err == nil {
			t.Fatalf("capturer as %s with %v started: %s", user, caps, out)
		}
		return err.Error()
	}
	if got := run("65534:65534", "NET_RAW"); !strings.Contains(got, "needs CAP_NET_RAW") {
		t.Errorf("non-root with --cap-add NET_RAW: %s, want EPERM on the AF_PACKET socket", got)
	}
	if got := run("0:0", "NET_RAW"); !strings.Contains(got, "setgroups: operation not permitted") {
		t.Errorf("root with NET_RAW alone: %s, want setgroups EPERM", got)
	}
}

// checkStatic fails unless the ELF file b has no interpreter and no
// shared library dependencies.
func checkStatic(t *testing.T, name string, b []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: not ELF: %v", name, err)
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (has an interpreter)", name)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", name, libs)
	}
}

func baseSize(t *testing.T) int64 {
	out, err := docker(context.Background(), nil, "image", "inspect", "-f", "{{.Size}}", baseImage)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	json.Unmarshal([]byte(strings.TrimSpace(out)), &n)
	return n
}

// waitRunning returns the host pid of a running container.
func waitRunning(t *testing.T, id string) int {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, err := docker(context.Background(), nil, "inspect", "-f", "{{.State.Pid}}", id)
		if err == nil {
			var pid int
			json.Unmarshal([]byte(strings.TrimSpace(out)), &pid)
			if pid > 0 {
				return pid
			}
		}
	}
	logs, _ := docker(context.Background(), nil, "logs", id)
	t.Fatalf("container %s never ran: %s", id, logs)
	return 0
}
