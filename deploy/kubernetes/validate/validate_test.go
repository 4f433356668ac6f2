// Package validate checks the Kubernetes manifests of deploy/kubernetes
// without a cluster: every file decodes strictly into the k8s.io/api types
// (unknown fields, duplicate keys and wrong types are errors), every overlay
// renders with `kubectl kustomize` into strictly decoded objects, the Pod
// Security admission library (the code the API server runs) rates each
// container at the level HOW_TO_USE.md claims, and the security
// contexts, resources, probes, volumes and Service are what the docs say.
//
// It is its own Go module so that the product's go.mod stays small.
package validate

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psa "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

// kubernetesDir is deploy/kubernetes; readmePath is HOW_TO_USE.md.
const (
	kubernetesDir = ".."
	readmePath    = "../../../HOW_TO_USE.md"
)

// defaultCaps is the capability set containerd and Docker (moby) give a
// container that asks for nothing else. CRI-O's lacks NET_RAW.
var defaultCaps = []string{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
	"MKNOD", "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}

// objects are the strictly decoded objects of one rendered overlay.
type objects struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	netpols     map[string]*networkingv1.NetworkPolicy
}

// decodeStrict decodes one YAML document into its k8s.io/api type.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "networking.k8s.io/v1 NetworkPolicy":
		obj = &networkingv1.NetworkPolicy{}
	default:
		return nil, fmt.Errorf("unexpected %q %q (add its type to the test)", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// overlays returns the overlay names (the directories of overlays/).
func overlays(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(kubernetesDir, "overlays", "*", "kustomization.yaml"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no overlays: %v", err)
	}
	var names []string
	for _, d := range dirs {
		names = append(names, filepath.Base(filepath.Dir(d)))
	}
	return names
}

var renderCache = map[string]objects{}

// render runs kubectl kustomize on the overlay and decodes its output.
func render(t *testing.T, overlay string) objects {
	t.Helper()
	if o, ok := renderCache[overlay]; ok {
		return o
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl not found: it renders the kustomize overlays")
	}
	var stderr bytes.Buffer
	c := exec.Command(kubectl, "kustomize", filepath.Join(kubernetesDir, "overlays", overlay))
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize overlays/%s: %v\n%s", overlay, err, stderr.Bytes())
	}
	o := objects{map[string]*appsv1.Deployment{}, map[string]*corev1.Service{}, map[string]*networkingv1.NetworkPolicy{}}
	for _, doc := range splitDocs(out) {
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("overlays/%s renders an object that does not decode strictly: %v\n%s", overlay, err, doc)
		}
		switch v := obj.(type) {
		case *appsv1.Deployment:
			o.deployments[v.Name] = v
		case *corev1.Service:
			o.services[v.Name] = v
		case *networkingv1.NetworkPolicy:
			o.netpols[v.Name] = v
		}
	}
	renderCache[overlay] = o
	return o
}

// watched returns the overlay's Deployment that LightShark-mini joined.
func watched(t *testing.T, o objects) *appsv1.Deployment {
	t.Helper()
	var found *appsv1.Deployment
	for _, d := range o.deployments {
		if d.Labels["lightshark.dev/watch"] == "true" {
			if found != nil {
				t.Fatalf("more than one watched Deployment")
			}
			found = d
		}
	}
	if found == nil {
		t.Fatal("no Deployment labelled lightshark.dev/watch: \"true\"")
	}
	return found
}

// lightsharkContainers returns the pod's containers (init or not) named
// lightshark*.
func lightsharkContainers(spec *corev1.PodSpec) map[string]*corev1.Container {
	m := map[string]*corev1.Container{}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			if strings.HasPrefix(list[i].Name, "lightshark") {
				m[list[i].Name] = &list[i]
			}
		}
	}
	return m
}

// TestSourcesDecodeStrictly decodes every manifest and patch file (not the
// kustomization files, which kustomize itself checks when rendering) into
// its k8s.io/api type, and the kubectl debug --custom files into Container.
func TestSourcesDecodeStrictly(t *testing.T) {
	n := 0
	err := filepath.Walk(kubernetesDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() && fi.Name() == "validate" {
			return filepath.SkipDir
		}
		if fi.IsDir() || (!strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml")) || fi.Name() == "kustomization.yaml" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		if filepath.Base(filepath.Dir(p)) == "debug" {
			var c corev1.Container
			if err := yaml.UnmarshalStrict(b, &c); err != nil {
				t.Errorf("%s: as a partial container spec: %v", p, err)
			}
			return nil
		}
		for _, doc := range splitDocs(b) {
			if _, err := decodeStrict(doc); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d manifest files found under %s", n, kubernetesDir)
	}
}

// TestOverlaysRender renders every overlay and checks what all have in
// common: the watched Deployment, the API Service that selects its pods
// and reaches the API's container port, and hardened settings on every
// LightShark-mini container.
func TestOverlaysRender(t *testing.T) {
	for _, name := range overlays(t) {
		t.Run(name, func(t *testing.T) {
			o := render(t, name)
			d := watched(t, o)
			spec := &d.Spec.Template.Spec
			ls := lightsharkContainers(spec)
			if len(ls) == 0 {
				t.Fatal("no lightshark container in the watched pod")
			}
			apiPort := false
			var image string
			for cname, c := range ls {
				checkHardenedContainer(t, cname, c)
				if image == "" {
					image = c.Image
				} else if c.Image != image {
					t.Errorf("%s: image %s, the others %s (one image holds all three binaries)", cname, c.Image, image)
				}
				for _, p := range c.Ports {
					if p.Name == "lightshark-api" {
						apiPort = true
						checkProbes(t, cname, c)
					}
				}
			}
			if !apiPort {
				t.Error("no container port named lightshark-api")
			}
			// The workload's containers stay in spec.containers, first.
			if len(spec.Containers) == 0 || strings.HasPrefix(spec.Containers[0].Name, "lightshark") {
				t.Errorf("the workload's container is not first in spec.containers")
			}

			svc, ok := o.services["lightshark-api"]
			if !ok {
				t.Fatal("no Service lightshark-api")
			}
			for k, v := range svc.Spec.Selector {
				if d.Spec.Template.Labels[k] != v {
					t.Errorf("Service lightshark-api selects %s=%s, which the pod template lacks", k, v)
				}
			}
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "lightshark-api" || svc.Spec.Ports[0].Port != 3000 {
				t.Errorf("Service lightshark-api ports %+v, want 3000 to the port named lightshark-api", svc.Spec.Ports)
			}
			if svc.Annotations["prometheus.io/port"] != "3000" || svc.Annotations["prometheus.io/path"] != "/metrics" {
				t.Errorf("Service lightshark-api scrape annotations %v", svc.Annotations)
			}
			wantScrape := "true"
			if name == "hardened" {
				wantScrape = "false" // the token is required; annotations cannot send it
			}
			if got := svc.Annotations["prometheus.io/scrape"]; got != wantScrape {
				t.Errorf("prometheus.io/scrape %q, want %q", got, wantScrape)
			}

			// The pod as a whole (the example workload included) is
			// admitted where Pod Security "baseline" is enforced.
			if res := evaluate(&d.Spec.Template.ObjectMeta, spec, psa.LevelBaseline); !res.Allowed {
				t.Errorf("the pod is not admitted at baseline: %s", res.ForbiddenReason())
			}
		})
	}
}

// checkHardenedContainer asserts what every LightShark-mini container
// has: a read-only root file system, no privilege escalation, not
// privileged, seccomp RuntimeDefault, a native sidecar, runAsNonRoot set
// explicitly and consistent with runAsUser, and GOMEMLIMIT from its own
// memory limit.
func checkHardenedContainer(t *testing.T, name string, c *corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", name)
		return
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", name)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", name)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile is not RuntimeDefault", name)
	}
	if sc.RunAsUser == nil || sc.RunAsNonRoot == nil || *sc.RunAsNonRoot != (*sc.RunAsUser != 0) {
		t.Errorf("%s: runAsUser and runAsNonRoot must both be set, and agree", name)
	}
	if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("%s: not a native sidecar (restartPolicy: Always)", name)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("%s: imagePullPolicy %q, want IfNotPresent", name, c.ImagePullPolicy)
	}
	found := false
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		found = true
		ref := e.ValueFrom
		if ref == nil || ref.ResourceFieldRef == nil || ref.ResourceFieldRef.Resource != "limits.memory" ||
			(ref.ResourceFieldRef.ContainerName != "" && ref.ResourceFieldRef.ContainerName != name) ||
			(!ref.ResourceFieldRef.Divisor.IsZero() && ref.ResourceFieldRef.Divisor.Cmp(resource.MustParse("1")) != 0) {
			t.Errorf("%s: GOMEMLIMIT is not its own limits.memory in bytes (downward API): %+v", name, e)
		}
	}
	if !found {
		t.Errorf("%s: no GOMEMLIMIT", name)
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: no memory limit", name)
	}
}

// checkProbes asserts readiness and liveness probes on /api/health.
func checkProbes(t *testing.T, name string, c *corev1.Container) {
	t.Helper()
	for what, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/api/health" || p.HTTPGet.Port.String() != "lightshark-api" {
			t.Errorf("%s: %s probe is not GET /api/health on lightshark-api: %+v", name, what, p)
		}
	}
}

// evaluate runs the Pod Security admission checks of the latest version at
// level on a pod.
func evaluate(meta *metav1.ObjectMeta, spec *corev1.PodSpec, level psa.Level) policy.AggregateCheckResult {
	e, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		panic(err)
	}
	return policy.AggregateCheckResults(e.EvaluatePod(psa.LevelVersion{Level: level, Version: psa.LatestVersion()}, meta, spec))
}

// onlyContainer returns a copy of the pod spec holding the named container
// alone (with the pod-level settings and the volumes it mounts).
func onlyContainer(spec *corev1.PodSpec, name string) *corev1.PodSpec {
	s := spec.DeepCopy()
	s.InitContainers, s.Containers = nil, nil
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if c.Name == name {
			s.Containers = []corev1.Container{c}
		}
	}
	mounted := map[string]bool{}
	for _, c := range s.Containers {
		for _, m := range c.VolumeMounts {
			mounted[m.Name] = true
		}
	}
	s.Volumes = slices.DeleteFunc(s.Volumes, func(v corev1.Volume) bool { return !mounted[v.Name] })
	return s
}

// heldCaps is the capability set a container starts with: the runtime's
// default set less what it drops, plus what it adds (ALL drops all).
func heldCaps(c *corev1.Container) []string {
	set := map[string]bool{}
	caps := c.SecurityContext.Capabilities
	dropAll := false
	if caps != nil {
		for _, d := range caps.Drop {
			if d == "ALL" {
				dropAll = true
			}
		}
	}
	if !dropAll {
		for _, c := range defaultCaps {
			set[c] = true
		}
	}
	if caps != nil {
		for _, d := range caps.Drop {
			delete(set, strings.TrimPrefix(string(d), "CAP_"))
		}
		for _, a := range caps.Add {
			set[strings.TrimPrefix(string(a), "CAP_")] = true
		}
	}
	var out []string
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// docRow is one row of the table between <!-- k8s-containers:begin -->
// and <!-- k8s-containers:end --> in HOW_TO_USE.md.
type docRow struct {
	overlay, container string
	user               int64
	caps               []string
	level              psa.Level
	memReq, memLim     string
	cpuReq, cpuLim     string
}

func readDocTable(t *testing.T) []docRow {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "<!-- k8s-containers:begin -->")
	end := strings.Index(s, "<!-- k8s-containers:end -->")
	if start < 0 || end < start {
		t.Fatalf("%s has no <!-- k8s-containers:begin/end --> table", readmePath)
	}
	var rows []docRow
	for _, line := range strings.Split(s[start:end], "\n") {
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") || strings.Contains(line, "| overlay |") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.Trim(strings.TrimSpace(c), "`"))
		}
		if len(cells) != 7 {
			t.Fatalf("table row %q: %d cells, want 7", line, len(cells))
		}
		r := docRow{overlay: cells[0], container: cells[1], level: psa.Level(strings.ToLower(cells[4]))}
		userField := regexp.MustCompile(`^\d+`).FindString(cells[2])
		if userField == "" {
			t.Fatalf("table row %q: runs-as %q does not start with a uid", line, cells[2])
		}
		r.user, _ = strconv.ParseInt(userField, 10, 64)
		if cells[3] != "none" {
			for _, c := range strings.Split(cells[3], ",") {
				r.caps = append(r.caps, strings.TrimSpace(c))
			}
			sort.Strings(r.caps)
		}
		mem := strings.Split(cells[5], "/")
		cpu := strings.Split(cells[6], "/")
		if len(mem) != 2 || len(cpu) != 2 {
			t.Fatalf("table row %q: resources are not REQUEST / LIMIT", line)
		}
		r.memReq, r.memLim = strings.TrimSpace(mem[0]), strings.TrimSpace(mem[1])
		r.cpuReq, r.cpuLim = strings.TrimSpace(cpu[0]), strings.TrimSpace(cpu[1])
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		t.Fatal("the containers table is empty")
	}
	return rows
}

// TestContainersAsDocumented checks each row of HOW_TO_USE.md's
// containers table against the rendered overlay: the user the container
// starts as, the capabilities it starts with, the Pod Security level the
// admission checks give it alone (and that it misses the next stricter
// level), and its resources. Every LightShark-mini container of every
// overlay must have a row.
func TestContainersAsDocumented(t *testing.T) {
	rows := readDocTable(t)
	documented := map[string]bool{}
	for _, r := range rows {
		documented[r.overlay+"/"+r.container] = true
		t.Run(r.overlay+"/"+r.container, func(t *testing.T) {
			d := watched(t, render(t, r.overlay))
			spec := &d.Spec.Template.Spec
			c, ok := lightsharkContainers(spec)[r.container]
			if !ok {
				t.Fatalf("overlay %s has no container %s", r.overlay, r.container)
			}
			if got := *c.SecurityContext.RunAsUser; got != r.user {
				t.Errorf("runAsUser %d, docs say %d", got, r.user)
			}
			if got := heldCaps(c); !slices.Equal(got, r.caps) {
				t.Errorf("starts with capabilities %v (runtime default %v), docs say %v", got, "containerd/Docker", r.caps)
			}
			alone := onlyContainer(spec, r.container)
			if res := evaluate(&d.Spec.Template.ObjectMeta, alone, r.level); !res.Allowed {
				t.Errorf("not admitted at %s, as the docs say: %s", r.level, res.ForbiddenReason())
			}
			if r.level == psa.LevelBaseline {
				if res := evaluate(&d.Spec.Template.ObjectMeta, alone, psa.LevelRestricted); res.Allowed {
					t.Errorf("admitted at restricted: the docs undersell it (baseline)")
				}
			}
			for what, pair := range map[string][2]string{
				"memory request": {c.Resources.Requests.Memory().String(), r.memReq},
				"memory limit":   {c.Resources.Limits.Memory().String(), r.memLim},
				"cpu request":    {c.Resources.Requests.Cpu().String(), r.cpuReq},
				"cpu limit":      {c.Resources.Limits.Cpu().String(), r.cpuLim},
			} {
				want, err := resource.ParseQuantity(pair[1])
				if err != nil {
					t.Fatalf("docs %s %q: %v", what, pair[1], err)
				}
				got := resource.MustParse(pair[0])
				if got.Cmp(want) != 0 {
					t.Errorf("%s %s, docs say %s", what, pair[0], pair[1])
				}
			}
		})
	}
	for _, name := range overlays(t) {
		for cname := range lightsharkContainers(&watched(t, render(t, name)).Spec.Template.Spec) {
			if !documented[name+"/"+cname] {
				t.Errorf("overlay %s, container %s: no row in the containers table of %s", name, cname, readmePath)
			}
		}
	}
}

// args returns the value of a --flag in a container's arguments.
func arg(c *corev1.Container, flag string) string {
	a := append(append([]string{}, c.Command...), c.Args...)
	for i, s := range a {
		if s == flag && i+1 < len(a) {
			return a[i+1]
		}
		if v, ok := strings.CutPrefix(s, flag+"="); ok {
			return v
		}
	}
	return ""
}

// mountOf returns the volume mounted at dir (or a parent of it) in c.
func mountOf(c *corev1.Container, path string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volume(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// TestSidecarWiring checks that the two containers of the sidecar
// overlays can talk: the same in-memory emptyDir at the socket's
// directory, the capturer's --user in the API server's group and admitted
// by its --capturer-uid, and a database volume larger than --max-db-size.
// The supervisor's single container gets the same volumes.
func TestSidecarWiring(t *testing.T) {
	for _, name := range overlays(t) {
		t.Run(name, func(t *testing.T) {
			d := watched(t, render(t, name))
			spec := &d.Spec.Template.Spec
			ls := lightsharkContainers(spec)
			api, capt := ls["lightshark-apiserver"], ls["lightshark-capturer"]
			if sup, ok := ls["lightshark"]; ok {
				api, capt = sup, sup
			}
			if api == nil || capt == nil {
				t.Fatalf("containers %v: want lightshark-apiserver and lightshark-capturer, or lightshark", keys(ls))
			}
			sock := arg(api, "--socket")
			if sock == "" || arg(capt, "--socket") != sock {
				t.Fatalf("--socket %q (API server) and %q (capturer) differ", sock, arg(capt, "--socket"))
			}
			ma, okA := mountOf(api, sock)
			mc, okC := mountOf(capt, sock)
			if !okA || !okC || ma.Name != mc.Name {
				t.Fatalf("the socket %s is not on one volume mounted in both containers", sock)
			}
			if v := volume(spec, ma.Name); v == nil || v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
				t.Errorf("socket volume %s is not an in-memory emptyDir", ma.Name)
			}
			if api != capt {
				user := arg(capt, "--user")
				uid, gid, _ := strings.Cut(user, ":")
				if uid != arg(api, "--capturer-uid") {
					t.Errorf("capturer --user %s, API server --capturer-uid %s", user, arg(api, "--capturer-uid"))
				}
				if g := api.SecurityContext.RunAsGroup; g == nil || strconv.FormatInt(*g, 10) != gid {
					t.Errorf("capturer gid %q is not the API server's group (runAsGroup), so it cannot open the 0660 socket", gid)
				}
			}
			db := arg(api, "--db-path")
			m, ok := mountOf(api, db)
			if !ok {
				t.Fatalf("--db-path %s is on no volume (the root file system is read-only)", db)
			}
			v := volume(spec, m.Name)
			maxSize := resource.MustParse(strings.Replace(arg(api, "--max-db-size"), "iB", "i", 1))
			if v == nil || v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.Cmp(maxSize) <= 0 {
				t.Errorf("database volume %s: want an emptyDir with a sizeLimit above --max-db-size %s", m.Name, maxSize.String())
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// TestHardened checks the hardened overlay's additions: the token file is
// on a Secret volume mounted in the API server's container alone, and the
// NetworkPolicy opens the API's port to labelled clients only.
func TestHardened(t *testing.T) {
	o := render(t, "hardened")
	d := watched(t, o)
	spec := &d.Spec.Template.Spec
	ls := lightsharkContainers(spec)
	api := ls["lightshark-apiserver"]
	if api == nil {
		t.Fatal("no lightshark-apiserver")
	}
	tokenFile := arg(api, "--api-token-file")
	m, ok := mountOf(api, tokenFile)
	if tokenFile == "" || !ok {
		t.Fatalf("--api-token-file %q is not on a volume", tokenFile)
	}
	v := volume(spec, m.Name)
	if v == nil || v.Secret == nil || v.Secret.SecretName != "lightshark-api-token" {
		t.Fatalf("the token's volume %s is not the Secret lightshark-api-token", m.Name)
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if c.Name == api.Name {
			continue
		}
		for _, vm := range c.VolumeMounts {
			if vm.Name == m.Name {
				t.Errorf("container %s mounts the token too", c.Name)
			}
		}
	}
	if d.Spec.Template.Spec.AutomountServiceAccountToken == nil || *d.Spec.Template.Spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token")
	}

	var np *networkingv1.NetworkPolicy
	for _, p := range o.netpols {
		sel, _ := metav1.LabelSelectorAsMap(&p.Spec.PodSelector)
		matches := true
		for k, v := range sel {
			if d.Spec.Template.Labels[k] != v {
				matches = false
			}
		}
		if matches {
			np = p
		}
	}
	if np == nil {
		t.Fatal("no NetworkPolicy selects the watched pods")
	}
	apiRule := false
	for _, rule := range np.Spec.Ingress {
		opens3000 := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			if p.Port != nil && p.Port.IntValue() == 3000 {
				opens3000 = true
			}
		}
		if !opens3000 {
			continue
		}
		if len(rule.From) == 0 {
			t.Errorf("an ingress rule opens the API's port to everyone: %+v", rule)
		}
		apiRule = true
	}
	if !apiRule {
		t.Error("no ingress rule lets the API's clients in")
	}
}

// TestDebugRecipe checks the ephemeral-container files: partial container
// specs for kubectl debug --custom that start the capturer as root with
// NET_RAW, SETUID and SETGID only, and that HOW_TO_USE.md gives the
// command with --profile=netadmin and --target.
func TestDebugRecipe(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(kubernetesDir, "debug", "capturer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c corev1.Container
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		t.Fatal(err)
	}
	if c.SecurityContext == nil || c.SecurityContext.RunAsUser == nil || *c.SecurityContext.RunAsUser != 0 {
		t.Fatal("the debug capturer must start as root (runAsUser: 0) to get its capabilities")
	}
	checkCaps := []string{"NET_RAW", "SETGID", "SETUID"}
	if got := heldCaps(&c); !slices.Equal(got, checkCaps) {
		t.Errorf("the debug capturer starts with %v, want %v", got, checkCaps)
	}
	if c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := regexp.MustCompile(`kubectl debug (?:[^\n\\]|\\\n)*`).FindAllString(string(readme), -1)
	ok := false
	for _, s := range cmd {
		if strings.Contains(s, "--profile=netadmin") && strings.Contains(s, "--target=") &&
			strings.Contains(s, "--custom=deploy/kubernetes/debug/capturer.yaml") {
			ok = true
		}
	}
	if !ok {
		t.Errorf("%s has no kubectl debug command with --profile=netadmin, --target= and --custom=deploy/kubernetes/debug/capturer.yaml", readmePath)
	}
}
