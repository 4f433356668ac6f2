// Package dockertest runs the deployments of HOW_TO_USE.md in real
// containers: it builds the image from the real Dockerfile (offline, with
// stand-ins for the two public base images), checks the image, then brings
// up each Docker Compose deployment around a small HTTP service and a
// client making real requests, and compares what the API reports with what
// the client did and what tcpdump saw in the watched container's network
// namespace.
//
// It runs only under `make docker-test` (deploy/test/docker-test.sh), which
// installs Docker, starts a private dockerd (own data root, --iptables=false,
// no bridge) and removes it afterwards; elsewhere every test skips.
package dockertest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Image names inside the private dockerd. baseImage is read from the
// Dockerfile (ARG BASE_IMAGE) so that the stand-in takes the real name.
const (
	productImage  = "lightshark-mini:test"
	binariesImage = "lightshark-mini-binaries:test"
	demoImage     = "lightshark-demo:test"
)

var (
	enabled = os.Getenv("LIGHTSHARK_DOCKER_TEST") == "1"
	// dockerBin is the Docker client matching the daemon (docker.io's),
	// which builds with BuildKit without the buildx plugin.
	dockerBin = envOr("DOCKER", "docker")
	// composeBin is Docker Compose v1 (Debian's docker-compose).
	composeBin = envOr("COMPOSE", "docker-compose")
	repoRoot   string
	baseImage  string
	// setupErr is why building the images failed; every test then fails
	// with it.
	setupErr error
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	if enabled {
		setupErr = setup()
	}
	os.Exit(m.Run())
}

// requireDocker skips the test outside make docker-test and fails it when
// the images could not be built.
func requireDocker(t *testing.T) {
	t.Helper()
	if !enabled {
		t.Skip("needs a private dockerd: run make docker-test")
	}
	if setupErr != nil {
		t.Fatalf("build the images: %v", setupErr)
	}
}

// setup builds the images every test uses, once:
//
//   - the build context, exactly as the Dockerfile's build stage gets it
//     (the real .dockerignore applied by BuildKit), exported from a
//     FROM scratch image;
//   - the build stage's RUN commands, run on the host in that context with
//     the host's Go toolchain (the stand-in for the golang image), which
//     leave the stage's /out tree; imported as an image and passed to the
//     real Dockerfile as BINARIES;
//   - a stand-in for the distroless base (users nonroot/nobody, /tmp),
//     imported under the real name;
//   - the product image from the real Dockerfile's final stage;
//   - the demo workload (deploy/test/demo), FROM scratch.
func setup() error {
	start := time.Now()
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`(?m)^ARG BASE_IMAGE=(\S+)$`).FindSubmatch(dockerfile)
	if m == nil {
		return fmt.Errorf("Dockerfile: no ARG BASE_IMAGE=...")
	}
	baseImage = string(m[1])

	tmp, err := os.MkdirTemp("", "lightshark-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	ctxDir := filepath.Join(tmp, "context")
	if err := exportBuildContext(tmp, ctxDir); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	out := filepath.Join(tmp, "out")
	if err := runBuildStage(dockerfile, ctxDir, out); err != nil {
		return fmt.Errorf("build stage: %w", err)
	}
	if err := importTree(binariesImage, map[string]string{"out": out}, nil); err != nil {
		return fmt.Errorf("binaries image: %w", err)
	}
	if err := importBase(tmp); err != nil {
		return fmt.Errorf("base image stand-in: %w", err)
	}
	if _, err := docker(context.Background(), nil, "build", "-q",
		"--build-arg", "BINARIES="+binariesImage,
		"--build-arg", "VERSION=docker-test", "--build-arg", "COMMIT=test",
		"-t", productImage, repoRoot); err != nil {
		return fmt.Errorf("docker build (final stage of ./Dockerfile): %w", err)
	}
	if err := buildDemo(tmp); err != nil {
		return fmt.Errorf("demo image: %w", err)
	}
	fmt.Fprintf(os.Stderr, "docker-test: images built in %.1fs\n", time.Since(start).Seconds())
	return nil
}

// exportBuildContext builds `FROM scratch; COPY . /ctx/` with the
// repository as context (so BuildKit applies the real .dockerignore) and
// extracts /ctx into dir.
func exportBuildContext(tmp, dir string) error {
	df := filepath.Join(tmp, "Dockerfile.context")
	if err := os.WriteFile(df, []byte("FROM scratch\nCOPY . /ctx/\nCMD [\"none\"]\n"), 0o644); err != nil {
		return err
	}
	const img = "lightshark-context:test"
	if _, err := docker(context.Background(), nil, "build", "-q", "-f", df, "-t", img, repoRoot); err != nil {
		return err
	}
	defer docker(context.Background(), nil, "rmi", img)
	return exportImage(img, func(hdr *tar.Header, r io.Reader) error {
		name := strings.TrimPrefix(hdr.Name, "./")
		rel, ok := strings.CutPrefix(name, "ctx/")
		if !ok || rel == "" {
			return nil
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			return os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(hdr.Mode)&0o777)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, r)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}
		return nil
	})
}

// runBuildStage runs the Dockerfile's `RUN make build ...` instruction
// (with its continuation lines) in ctxDir with bash, writing the stage's
// /out tree to out instead.
func runBuildStage(dockerfile []byte, ctxDir, out string) error {
	var cmd strings.Builder
	in := false
	for _, line := range strings.Split(string(dockerfile), "\n") {
		if !in && strings.HasPrefix(line, "RUN make build") {
			in = true
			line = strings.TrimPrefix(line, "RUN ")
		}
		if !in {
			continue
		}
		cont := strings.HasSuffix(line, "\\")
		cmd.WriteString(strings.TrimSuffix(line, "\\"))
		cmd.WriteString(" ")
		if !cont {
			break
		}
	}
	script := strings.ReplaceAll(cmd.String(), " /out/", " $OUT/")
	if script == "" || strings.Contains(script, "/out") {
		return fmt.Errorf("cannot find the build stage's RUN make build in the Dockerfile (or it names /out in a way this test does not rewrite): %q", script)
	}
	c := exec.Command("bash", "-euc", script)
	c.Dir = ctxDir
	c.Env = append(os.Environ(), "OUT="+out, "VERSION=docker-test", "COMMIT=test", "CGO_ENABLED=0")
	b, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", script, err, b)
	}
	return nil
}

// importBase imports a stand-in for the distroless static image: the
// users and groups it has (root, nobody, nonroot), /tmp and /home/nonroot,
// with its USER and WORKDIR. Like the real one, it has no shell.
func importBase(tmp string) error {
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
		"etc/group": "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n",
	}
	dirs := map[string]tar.Header{
		"etc":          {Mode: 0o755},
		"tmp":          {Mode: 0o1777},
		"home":         {Mode: 0o755},
		"home/nonroot": {Mode: 0o700, Uid: 65532, Gid: 65532},
		"root":         {Mode: 0o700},
	}
	return importTar(baseImage, func(tw *tar.Writer) error {
		for _, name := range []string{"etc", "tmp", "home", "home/nonroot", "root"} {
			h := dirs[name]
			h.Name, h.Typeflag, h.ModTime = name+"/", tar.TypeDir, time.Now()
			if err := tw.WriteHeader(&h); err != nil {
				return err
			}
		}
		for name, body := range files {
			h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Now()}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := io.WriteString(tw, body); err != nil {
				return err
			}
		}
		return nil
	}, "USER 65532:65532", "WORKDIR /home/nonroot")
}

// importTree imports the directories of trees (name in the image →
// directory on the host) as an image, keeping modes and owners.
func importTree(image string, trees map[string]string, changes []string) error {
	return importTar(image, func(tw *tar.Writer) error {
		for name, dir := range trees {
			err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				rel, err := filepath.Rel(dir, p)
				if err != nil {
					return err
				}
				h, err := tar.FileInfoHeader(fi, "")
				if err != nil {
					return err
				}
				h.Name = filepath.ToSlash(filepath.Join(name, rel))
				h.Uname, h.Gname = "", ""
				if fi.IsDir() {
					h.Name += "/"
				}
				if err := tw.WriteHeader(h); err != nil {
					return err
				}
				if fi.Mode().IsRegular() {
					f, err := os.Open(p)
					if err != nil {
						return err
					}
					defer f.Close()
					_, err = io.Copy(tw, f)
					return err
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}, changes...)
}

// importTar runs `docker import` on the tar stream write produces.
func importTar(image string, write func(*tar.Writer) error, changes ...string) error {
	args := []string{"import"}
	for _, c := range changes {
		args = append(args, "-c", c)
	}
	args = append(args, "-", image)
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := write(tw)
		if cerr := tw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	_, err := docker(context.Background(), pr, args...)
	return err
}

// buildDemo builds deploy/test/demo statically into a FROM scratch image.
func buildDemo(tmp string) error {
	dir := filepath.Join(tmp, "demo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "lsdemo"), "./deploy/test/demo")
	c.Dir = repoRoot
	c.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	df := "FROM scratch\nCOPY lsdemo /lsdemo\nUSER 65534:65534\nENTRYPOINT [\"/lsdemo\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	_, err := docker(context.Background(), nil, "build", "-q", "-t", demoImage, dir)
	return err
}

// exportImage streams the file system of a container made from image
// (docker create + docker export) through fn, entry by entry.
func exportImage(image string, fn func(*tar.Header, io.Reader) error) error {
	ctx := context.Background()
	id, err := docker(ctx, nil, "create", image)
	if err != nil {
		return err
	}
	id = strings.TrimSpace(id)
	defer docker(ctx, nil, "rm", "-f", id)
	c := exec.CommandContext(ctx, dockerBin, "export", id)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	r, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	tr := tar.NewReader(bufio.NewReader(r))
	var ferr error
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			ferr = err
			break
		}
		if err := fn(hdr, tr); err != nil {
			ferr = err
			break
		}
	}
	io.Copy(io.Discard, r)
	if err := c.Wait(); err != nil && ferr == nil {
		ferr = fmt.Errorf("docker export: %v: %s", err, stderr.Bytes())
	}
	return ferr
}

// docker runs the Docker client (BuildKit on) with stdin and returns its
// standard output; the error holds standard error.
func docker(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, dockerBin, args...)
	c.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	c.Stdin = stdin
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
