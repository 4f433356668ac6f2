package dockertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// k8sContainer is the part of a rendered container spec that the kubelet
// turns into runtime settings (decoded loosely: deploy/kubernetes/validate
// decodes the same manifests strictly into the k8s.io/api types).
type k8sContainer struct {
	Name      string   `yaml:"name"`
	Command   []string `yaml:"command"`
	Args      []string `yaml:"args"`
	Resources struct {
		Limits map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext k8sSecurityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sSecurityContext struct {
	RunAsUser                *int64 `yaml:"runAsUser"`
	RunAsGroup               *int64 `yaml:"runAsGroup"`
	ReadOnlyRootFilesystem   bool   `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Capabilities             struct {
		Add  []string `yaml:"add"`
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
}

// dockerFlags are the docker run flags that give a container what the
// kubelet gives it under containerd and runc (same default capability set,
// default seccomp profile, no ambient capabilities).
func (sc k8sSecurityContext) dockerFlags() []string {
	var f []string
	if sc.RunAsUser != nil {
		u := strconv.FormatInt(*sc.RunAsUser, 10)
		if sc.RunAsGroup != nil {
			u += ":" + strconv.FormatInt(*sc.RunAsGroup, 10)
		}
		f = append(f, "--user", u)
	}
	for _, c := range sc.Capabilities.Drop {
		f = append(f, "--cap-drop", c)
	}
	for _, c := range sc.Capabilities.Add {
		f = append(f, "--cap-add", c)
	}
	if sc.ReadOnlyRootFilesystem {
		f = append(f, "--read-only")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		f = append(f, "--security-opt", "no-new-privileges")
	}
	return f
}

// renderedSidecars returns the LightShark-mini containers of the watched
// Deployment of a rendered overlay, in order.
func renderedSidecars(t *testing.T, overlay string) []k8sContainer {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not found")
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(repoRoot, "deploy", "kubernetes", "overlays", overlay)).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(out)))
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Template struct {
					Spec struct {
						InitContainers []k8sContainer `yaml:"initContainers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc.Kind != "Deployment" || doc.Metadata.Labels["lightshark.dev/watch"] != "true" {
			continue
		}
		var cs []k8sContainer
		for _, c := range doc.Spec.Template.Spec.InitContainers {
			if strings.HasPrefix(c.Name, "lightshark") {
				cs = append(cs, c)
			}
		}
		return cs
	}
	t.Fatalf("overlay %s: no watched Deployment", overlay)
	return nil
}

// podInDocker is a pod emulated in Docker: the workload's container holds
// the network namespace (as the pause container does), the others join it,
// emptyDir volumes are fresh 0777 host directories.
type podInDocker struct {
	t       *testing.T
	name    string
	network string
	web     string
	volumes string
	api     *project
}

func newPodInDocker(t *testing.T) *podInDocker {
	t.Helper()
	ctx := context.Background()
	var rnd [3]byte
	rand.Read(rnd[:])
	pod := &podInDocker{t: t, name: "lsdt-pod-" + hex.EncodeToString(rnd[:]), volumes: t.TempDir()}
	pod.network = pod.name
	pod.api = &project{t: t, apiPort: freePort(t)}
	if _, err := docker(ctx, nil, "network", "create", pod.network); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out, _ := docker(ctx, nil, "ps", "-aq", "--filter", "name="+pod.name)
		for _, id := range strings.Fields(out) {
			if t.Failed() {
				logs, _ := dockerCombined(id)
				t.Logf("logs of %s:\n%s", id, logs)
			}
			docker(ctx, nil, "rm", "-f", "-v", id)
		}
		docker(ctx, nil, "network", "rm", pod.network)
	})
	pod.web = pod.name + "-web"
	if _, err := docker(ctx, nil, "run", "-d", "--name", pod.web, "--network", pod.network, "--network-alias", "target",
		"-p", fmt.Sprintf("127.0.0.1:%d:3000", pod.api.apiPort), demoImage, "serve", ":8080"); err != nil {
		t.Fatal(err)
	}
	return pod
}

// run starts a container of the rendered spec in the pod, as the kubelet
// would: its security context, its memory limit (and GOMEMLIMIT from it,
// the downward API's value), its command and arguments, its volumes.
func (pod *podInDocker) run(c k8sContainer) string {
	pod.t.Helper()
	args := []string{"run", "-d", "--name", pod.name + "-" + c.Name, "--network", "container:" + pod.web}
	args = append(args, c.SecurityContext.dockerFlags()...)
	if m := c.Resources.Limits["memory"]; m != "" {
		b := quantityBytes(pod.t, m)
		args = append(args, "--memory", strconv.FormatInt(b, 10), "-e", "GOMEMLIMIT="+strconv.FormatInt(b, 10))
	}
	for _, v := range c.VolumeMounts {
		dir := filepath.Join(pod.volumes, v.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			pod.t.Fatal(err)
		}
		os.Chmod(dir, 0o777) // emptyDir
		args = append(args, "-v", dir+":"+v.MountPath)
	}
	cmd := c.Args
	if len(c.Command) > 0 {
		args = append(args, "--entrypoint", c.Command[0])
		cmd = append(append([]string{}, c.Command[1:]...), c.Args...)
	}
	args = append(args, productImage)
	args = append(args, cmd...)
	id, err := docker(context.Background(), nil, args...)
	if err != nil {
		pod.t.Fatal(err)
	}
	return strings.TrimSpace(id)
}

func (pod *podInDocker) pid(id string) int {
	pod.t.Helper()
	return waitRunning(pod.t, id)
}

func (pod *podInDocker) runClient(n int) []clientResult {
	pod.t.Helper()
	out, err := docker(context.Background(), nil, "run", "--rm", "--network", pod.network, demoImage, "get", "http://target:8080/", strconv.Itoa(n))
	if err != nil {
		pod.t.Fatal(err)
	}
	return parseClient(pod.t, out, n)
}

// quantityBytes reads a Kubernetes memory quantity (Ki, Mi, Gi or bytes).
func quantityBytes(t *testing.T, q string) int64 {
	t.Helper()
	mult := int64(1)
	for suf, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if n, ok := strings.CutSuffix(q, suf); ok {
			q, mult = n, m
		}
	}
	n, err := strconv.ParseInt(q, 10, 64)
	if err != nil {
		t.Fatalf("memory quantity %q: %v", q, err)
	}
	return n * mult
}

// TestKubernetesPodInDocker runs the rendered Kubernetes pods' LightShark-mini
// containers in Docker with the settings the kubelet derives from their
// specs under containerd and runc, whose default capability set and lack of
// ambient capabilities Docker shares. It shows that the capability spelling
// the manifests use to meet Pod Security baseline (drop every default
// capability but the ones needed, add none) leaves exactly NET_RAW, SETUID
// and SETGID (and CHOWN for the supervisor), that this is enough to capture,
// and that the documented flows come out. It also runs the kubectl debug
// recipe's container (deploy/kubernetes/debug/capturer.yaml and the
// command of HOW_TO_USE.md) in the same pod.
func TestKubernetesPodInDocker(t *testing.T) {
	requireDocker(t)
	t.Run("sidecar", func(t *testing.T) {
		cs := renderedSidecars(t, "sidecar")
		if len(cs) != 2 || cs[0].Name != "lightshark-apiserver" || cs[1].Name != "lightshark-capturer" {
			t.Fatalf("sidecars %+v, want lightshark-apiserver then lightshark-capturer", cs)
		}
		pod := newPodInDocker(t)
		td := startTcpdump(t, pod.pid(pod.web))
		api := pod.run(cs[0])
		pod.api.waitHealth()
		capt := pod.run(cs[1])
		pod.api.waitCapturing()

		all := pod.runClient(20)
		pod.api.expectFlows(all, td)
		cst := mustStatus(t, pod.pid(capt))
		checkDropped(t, "capturer", cst)
		if cst.CapBnd != capNetRaw|capSetuid|capSetgid {
			t.Errorf("the manifest's capabilities leave %x, want NET_RAW|SETUID|SETGID", cst.CapBnd)
		}
		checkUnprivileged(t, "apiserver", mustStatus(t, pod.pid(api)), true)

		// kubectl debug: the ephemeral capturer of the recipe, alone in
		// the same pod, prints the flows it saw when interrupted.
		debugRecipe(t, pod, td)
	})
	t.Run("supervisor", func(t *testing.T) {
		cs := renderedSidecars(t, "supervisor")
		if len(cs) != 1 || cs[0].Name != "lightshark" {
			t.Fatalf("sidecars %+v, want lightshark", cs)
		}
		pod := newPodInDocker(t)
		td := startTcpdump(t, pod.pid(pod.web))
		sup := pod.run(cs[0])
		pod.api.waitCapturing()
		pod.api.expectFlows(pod.runClient(20), td)
		root := pod.pid(sup)
		rs := mustStatus(t, root)
		if rs.CapBnd != capNetRaw|capSetuid|capSetgid|capChown {
			t.Errorf("the manifest's capabilities leave %x, want NET_RAW|SETUID|SETGID|CHOWN", rs.CapBnd)
		}
		capPid, apiPid := childrenByName(t, root)
		checkDropped(t, "capturer child", mustStatus(t, capPid))
		checkUnprivileged(t, "apiserver child", mustStatus(t, apiPid), false)
	})
}

// debugRecipe runs the kubectl debug recipe's container: the security
// context of deploy/kubernetes/debug/capturer.yaml (which replaces the
// netadmin profile's capabilities) and the command after "--" in
// HOW_TO_USE.md's kubectl debug line.
func debugRecipe(t *testing.T, pod *podInDocker, td *tcpdump) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "kubernetes", "debug", "capturer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var custom struct {
		SecurityContext k8sSecurityContext `yaml:"securityContext"`
	}
	if err := yaml.Unmarshal(b, &custom); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, "HOW_TO_USE.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`kubectl debug (?:[^\n\\]|\\\n)*`).Find(readme)
	_, command, ok := strings.Cut(strings.ReplaceAll(string(m), "\\\n", " "), " -- ")
	if !ok {
		t.Fatalf("HOW_TO_USE.md: no kubectl debug command with -- COMMAND")
	}
	argv := strings.Fields(command)
	ctx := context.Background()
	args := append([]string{"run", "-d", "--name", pod.name + "-debugger", "--network", "container:" + pod.web},
		custom.SecurityContext.dockerFlags()...)
	args = append(args, "--entrypoint", argv[0], productImage)
	args = append(args, argv[1:]...)
	id, err := docker(ctx, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	id = strings.TrimSpace(id)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		logs, _ := dockerCombined(id)
		if strings.Contains(logs, "capture started") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the debug capturer did not start: %s", logs)
		}
	}
	checkDropped(t, "debug capturer", mustStatus(t, pod.pid(id)))
	clients := pod.runClient(5)
	var seen map[string]dirCounts
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Second) {
		seen, _ = td.stable()
		if seen != nil && hasAll(seen, clients) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tcpdump's counts of the client's connections never settled")
		}
	}
	if _, err := docker(ctx, nil, "kill", "-s", "INT", id); err != nil {
		t.Fatal(err)
	}
	if out, err := docker(ctx, nil, "wait", id); err != nil || strings.TrimSpace(out) != "0" {
		logs, _ := dockerCombined(id)
		t.Fatalf("the debug capturer exited %q %v after SIGINT: %s", out, err, logs)
	}
	stdout, err := docker(ctx, nil, "logs", id)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]apiFlow{}
	for _, line := range strings.Split(stdout, "\n") {
		var f apiFlow
		if json.Unmarshal([]byte(line), &f) == nil && f.DstPort == 8080 {
			got[f.SrcIP+":"+strconv.Itoa(f.SrcPort)] = f
		}
	}
	mine := map[string]dirCounts{}
	for _, c := range clients {
		mine[c.Local] = seen[c.Local]
	}
	if diff := compareFlows(clients, mine, got); diff != "" {
		t.Errorf("the debug capturer's flows differ from the client and tcpdump:\n%s", diff)
	}
}

func hasAll(seen map[string]dirCounts, clients []clientResult) bool {
	for _, c := range clients {
		if _, ok := seen[c.Local]; !ok {
			return false
		}
	}
	return true
}

// waitHealth waits until /api/health answers 200 (the startup probe).
func (p *project) waitHealth() {
	p.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if code, _, err := p.api("/api/health"); err == nil && code == 200 {
			return
		}
	}
	p.t.Fatal("/api/health never answered 200")
}

// dockerCombined returns a container's standard output and error.
func dockerCombined(id string) (string, error) {
	c := exec.Command(dockerBin, "logs", id)
	b, err := c.CombinedOutput()
	return string(b), err
}
