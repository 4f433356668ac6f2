package dockertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// moduleRoot is the repository root (this package is deploy/test).
func moduleRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// TestReadmeFilesExist checks that every file HOW_TO_USE.md names
// exists (paths under deploy/, with {a,b} alternatives expanded, and the
// Dockerfile and .dockerignore), except those its commands create (the
// target of a shell redirection, such as the token file). It needs no
// Docker and runs under make test too.
func TestReadmeFilesExist(t *testing.T) {
	root := moduleRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "HOW_TO_USE.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	pathRE := regexp.MustCompile(`deploy/[A-Za-z0-9_./{},-]*[A-Za-z0-9_}]`)
	created := map[string]bool{}
	for _, m := range regexp.MustCompile(`>\s*(deploy/[A-Za-z0-9_./-]+)`).FindAllStringSubmatch(text, -1) {
		created[m[1]] = true
	}
	named := map[string]bool{}
	for _, p := range pathRE.FindAllString(text, -1) {
		for _, e := range expandBraces(p) {
			if !created[e] {
				named[e] = true
			}
		}
	}
	for _, m := range regexp.MustCompile("`(Dockerfile|\\.dockerignore)`").FindAllStringSubmatch(text, -1) {
		named[m[1]] = true
	}
	if len(named) < 15 {
		t.Fatalf("only %d paths found in HOW_TO_USE.md: %v", len(named), named)
	}
	var missing []string
	for p := range named {
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err != nil {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	for _, p := range missing {
		t.Errorf("HOW_TO_USE.md names %s, which does not exist", p)
	}
}

// expandBraces expands one level of {a,b,c} alternatives.
func expandBraces(p string) []string {
	i := strings.Index(p, "{")
	j := strings.Index(p, "}")
	if i < 0 || j < i {
		return []string{p}
	}
	var out []string
	for _, alt := range strings.Split(p[i+1:j], ",") {
		out = append(out, expandBraces(p[:i]+alt+p[j+1:])...)
	}
	return out
}

// TestComposeFilesValid runs `docker-compose config -q` on every shipped
// compose file, alone and with the test's demo override (no daemon needed).
func TestComposeFilesValid(t *testing.T) {
	compose, err := exec.LookPath(composeBin)
	if err != nil {
		if enabled {
			t.Fatalf("%s not found", composeBin)
		}
		t.Skipf("%s not found (make docker-test installs it)", composeBin)
	}
	root := moduleRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "docker-compose", "*.yml"))
	if len(files) != 3 {
		t.Fatalf("compose files %v, want sidecar, supervisor and hardened", files)
	}
	token := filepath.Join(t.TempDir(), "api-token")
	if err := os.WriteFile(token, []byte("t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		for _, args := range [][]string{
			{"-f", f, "config", "-q"},
			{"-f", f, "-f", filepath.Join(root, "deploy", "test", "compose.demo.yml"), "config", "-q"},
		} {
			c := exec.Command(compose, args...)
			c.Env = append(os.Environ(), "LIGHTSHARK_API_TOKEN_FILE="+token, "LIGHTSHARK_DEMO_IMAGE=demo")
			if out, err := c.CombinedOutput(); err != nil {
				t.Errorf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
}
