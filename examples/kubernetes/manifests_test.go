// Package kubernetes holds example manifests that run an agent with the
// STACK sidecar as a native sidecar; this test decodes them with the
// Kubernetes API types and checks their wiring, so they cannot rot silently.
package kubernetes

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/stackctl/stack/config"
)

// What the manifests promise, and the checks below hold them to.
const (
	dataDir      = "/var/lib/stack" // the image's STACK_HOME
	sidecarName  = "stack"
	configMount  = "/etc/stack"
	configKey    = "stack.yaml"
	configMapRef = "stack-config"
	// Secrets only the sidecar may mount: the agent must never read the
	// CA's key, the issuer keys, its passport or a real credential.
	agentCASecret = "stack-ca"
)

// manifests is everything in this directory, decoded.
type manifests struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	accounts   map[string]*corev1.ServiceAccount
	// pods are the pod templates of every workload, by "Kind/name".
	pods map[string]*corev1.PodTemplateSpec
	jobs map[string]*batchv1.Job
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no manifests found")
	}
	m := &manifests{
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		accounts: map[string]*corev1.ServiceAccount{}, pods: map[string]*corev1.PodTemplateSpec{},
		jobs: map[string]*batchv1.Job{},
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocs(b) {
			where := f + "#" + strconv.Itoa(i)
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			// UnmarshalStrict: a misspelt or misplaced field is an error, as
			// the API server's strict field validation would make it.
			switch meta.APIVersion + " " + meta.Kind {
			case "v1 ConfigMap":
				var o corev1.ConfigMap
				strict(t, where, doc, &o)
				m.configMaps[o.Name] = &o
			case "v1 Secret":
				var o corev1.Secret
				strict(t, where, doc, &o)
				m.secrets[o.Name] = &o
			case "v1 ServiceAccount":
				var o corev1.ServiceAccount
				strict(t, where, doc, &o)
				m.accounts[o.Name] = &o
			case "batch/v1 Job":
				var o batchv1.Job
				strict(t, where, doc, &o)
				m.jobs[o.Name] = &o
				m.pods["Job/"+o.Name] = &o.Spec.Template
			case "apps/v1 Deployment":
				var o appsv1.Deployment
				strict(t, where, doc, &o)
				m.pods["Deployment/"+o.Name] = &o.Spec.Template
				if o.Spec.Selector == nil {
					t.Errorf("%s: Deployment %s has no selector", where, o.Name)
				} else {
					for k, v := range o.Spec.Selector.MatchLabels {
						if o.Spec.Template.Labels[k] != v {
							t.Errorf("%s: selector %s=%s does not match the pod template's labels", where, k, v)
						}
					}
				}
			default:
				t.Fatalf("%s: unexpected %q %q: teach this test about it", where, meta.APIVersion, meta.Kind)
			}
		}
	}
	if len(m.pods) == 0 {
		t.Fatal("no workloads found")
	}
	return m
}

// splitDocs splits a YAML stream on "---" lines, dropping empty documents.
func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(stripComments(cur.Bytes()))) > 0 {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if strings.TrimSpace(string(line)) == "---" {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return docs
}

func stripComments(b []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

func strict(t *testing.T, where string, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

// sidecarConfig loads the ConfigMap's stack.yaml with the real config
// loader, which rejects unknown keys and invalid values.
func sidecarConfig(t *testing.T, m *manifests) *config.Config {
	t.Helper()
	cm, ok := m.configMaps[configMapRef]
	if !ok {
		t.Fatalf("ConfigMap %s is missing", configMapRef)
	}
	text, ok := cm.Data[configKey]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", configMapRef, configKey)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, configKey)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, config.EnvPrefix+"_") {
			t.Setenv(k, "") // the file alone decides
			os.Unsetenv(k)
		}
	}
	cfg, err := config.Load(config.LoadOptions{Home: dataDir, File: file})
	if err != nil {
		t.Fatalf("ConfigMap %s: %s does not load: %v", configMapRef, configKey, err)
	}
	return cfg
}

func TestManifestsDecode(t *testing.T) {
	m := load(t)
	for name, s := range m.secrets {
		if s.Type != "" && s.Type != corev1.SecretTypeOpaque {
			t.Errorf("Secret %s: type %s, want Opaque", name, s.Type)
		}
	}
	for name, j := range m.jobs {
		if p := j.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyNever && p != corev1.RestartPolicyOnFailure {
			t.Errorf("Job %s: restartPolicy %q; a Job needs Never or OnFailure", name, p)
		}
	}
}

func TestSidecarConfig(t *testing.T) {
	m := load(t)
	cfg := sidecarConfig(t, m)
	host, _, err := net.SplitHostPort(cfg.Proxy.Listen)
	if err != nil {
		t.Fatalf("proxy.listen %q: %v", cfg.Proxy.Listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("proxy.listen %q: only containers of the pod may reach the proxy; want a loopback address", cfg.Proxy.Listen)
	}
	if strings.HasPrefix(cfg.KMS.URI, "local://") {
		// A Secret volume with fsGroup makes files group-readable, which
		// the local KMS refuses for its key; and a key beside what it
		// wraps protects nothing.
		t.Errorf("kms.uri %q: use a cloud KMS in the cluster example", cfg.KMS.URI)
	}
	if cfg.Proxy.PassportFile == "" {
		t.Error("proxy.passport_file is empty: the example runs the sidecar in single-agent mode")
	}
}

// The heart of it: in every workload the sidecar is a native sidecar,
// wired to the agent as the docs say.
func TestWorkloadWiring(t *testing.T) {
	m := load(t)
	cfg := sidecarConfig(t, m)
	_, listenPort, _ := net.SplitHostPort(cfg.Proxy.Listen)
	_, adminPort, _ := net.SplitHostPort(cfg.Proxy.AdminListen)
	wantProxy := "http://127.0.0.1:" + listenPort

	for name, tmpl := range m.pods {
		t.Run(name, func(t *testing.T) {
			spec := &tmpl.Spec
			volumes := map[string]*corev1.Volume{}
			for i := range spec.Volumes {
				volumes[spec.Volumes[i].Name] = &spec.Volumes[i]
			}

			// The account exists and hands out no API token.
			if sa, ok := m.accounts[spec.ServiceAccountName]; !ok {
				t.Errorf("serviceAccountName %q: no such ServiceAccount in the manifests", spec.ServiceAccountName)
			} else if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
				t.Errorf("ServiceAccount %s mounts an API token; the agent must not get one", sa.Name)
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Error("automountServiceAccountToken must be false on the pod")
			}

			// Non-root for every container, from the pod down.
			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Error("pod securityContext.runAsNonRoot must be true")
			}
			if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Error("pod securityContext.runAsUser must be set and not 0")
			}
			all := append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...)
			for _, c := range all {
				checkContainerSecurity(t, c)
				checkMounts(t, c, volumes)
				checkEnvRefs(t, c, m)
			}
			checkVolumes(t, volumes, m)

			// The sidecar: an init container that never stops, so the agent
			// starts after it and a Job still completes.
			si := slices.IndexFunc(spec.InitContainers, func(c corev1.Container) bool { return c.Name == sidecarName })
			if si < 0 {
				t.Fatalf("no init container named %q", sidecarName)
			}
			sc := spec.InitContainers[si]
			if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Errorf("init container %s: restartPolicy must be Always (a native sidecar)", sc.Name)
			}
			if !slices.Contains(sc.Args, "proxy") {
				t.Errorf("sidecar args %q do not run `stack proxy`", sc.Args)
			}
			if !slices.Contains(sc.Args, "--config="+configMount+"/"+configKey) {
				t.Errorf("sidecar args %q: want --config=%s/%s", sc.Args, configMount, configKey)
			}
			checkMountedFrom(t, sc, configMount, volumes, func(v *corev1.Volume) bool {
				return v.ConfigMap != nil && v.ConfigMap.Name == configMapRef
			}, "ConfigMap "+configMapRef)
			if env(sc, "STACK_HOME") != dataDir {
				t.Errorf("sidecar STACK_HOME = %q, want %s", env(sc, "STACK_HOME"), dataDir)
			}
			checkMountedFrom(t, sc, dataDir, volumes, func(v *corev1.Volume) bool {
				return v.EmptyDir != nil || v.PersistentVolumeClaim != nil
			}, "a writable emptyDir or PVC")
			for _, f := range []string{"ca.pem", "ca-key.json", "issuer-keys.json"} {
				if !mountsFile(sc, dataDir+"/"+f, volumes, m) {
					t.Errorf("sidecar: %s/%s does not come from a Secret key", dataDir, f)
				}
			}
			if !mountsFile(sc, cfg.Proxy.PassportFile, volumes, m) {
				t.Errorf("sidecar: proxy.passport_file %s does not come from a Secret key", cfg.Proxy.PassportFile)
			}

			// Probes on the admin port: started (and so the agent let in)
			// when ready, restarted when unhealthy.
			checkProbe(t, "startupProbe", sc.StartupProbe, sc, "/readyz", adminPort)
			checkProbe(t, "readinessProbe", sc.ReadinessProbe, sc, "/readyz", adminPort)
			checkProbe(t, "livenessProbe", sc.LivenessProbe, sc, "/healthz", adminPort)

			// Init containers before the sidecar run to completion first: they
			// may prepare the data directory but must not try to use the proxy.
			for _, c := range spec.InitContainers[:si] {
				if c.RestartPolicy != nil {
					t.Errorf("init container %s before the sidecar has a restartPolicy", c.Name)
				}
				if env(c, "HTTPS_PROXY") != "" {
					t.Errorf("init container %s uses the proxy before it starts", c.Name)
				}
				// Init containers run again when the pod restarts, and the
				// data directory is still there: a second `vault put` of the
				// same name must not fail the pod.
				if i := slices.Index(c.Args, "vault"); i >= 0 && i+1 < len(c.Args) && c.Args[i+1] == "put" &&
					!slices.Contains(c.Args, "--if-absent") && !slices.Contains(c.Args, "--update") {
					t.Errorf("init container %s: `vault put` without --if-absent fails when the pod restarts: %q", c.Name, c.Args)
				}
			}

			// The agent containers: proxy, NO_PROXY and CA wiring, and no
			// access to anything of the sidecar's but its CA certificate.
			if len(spec.Containers) == 0 {
				t.Fatal("no agent container")
			}
			for _, c := range spec.Containers {
				for _, k := range []string{"HTTPS_PROXY", "HTTP_PROXY"} {
					if got := env(c, k); got != wantProxy {
						t.Errorf("%s: %s = %q, want %s (the sidecar's proxy.listen)", c.Name, k, got, wantProxy)
					}
				}
				noProxy := strings.Split(env(c, "NO_PROXY"), ",")
				for _, h := range []string{"localhost", "127.0.0.1"} {
					if !slices.Contains(noProxy, h) {
						t.Errorf("%s: NO_PROXY %q lacks %s", c.Name, env(c, "NO_PROXY"), h)
					}
				}
				caVars := 0
				for _, k := range []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE"} {
					if p := env(c, k); p != "" {
						caVars++
						if !mountsSecretKey(c, p, volumes, agentCASecret, "ca.pem") {
							t.Errorf("%s: %s = %s is not ca.pem of Secret %s", c.Name, k, p, agentCASecret)
						}
					}
				}
				if caVars == 0 {
					t.Errorf("%s: no CA bundle variable points at the sidecar's CA", c.Name)
				}
				for _, vm := range c.VolumeMounts {
					v := volumes[vm.Name]
					if v != nil && v.Secret != nil && v.Secret.SecretName != agentCASecret {
						t.Errorf("%s mounts Secret %s; the agent may mount only %s", c.Name, v.Secret.SecretName, agentCASecret)
					}
					if vm.Name == "stack-data" || (v != nil && slices.ContainsFunc(sc.VolumeMounts, func(s corev1.VolumeMount) bool {
						return s.Name == vm.Name && v.EmptyDir != nil
					})) {
						t.Errorf("%s shares volume %s with the sidecar", c.Name, vm.Name)
					}
				}
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						t.Errorf("%s: env %s comes from Secret %s; the agent holds placeholders only", c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name)
					}
					if strings.HasSuffix(e.Name, "_API_KEY") && !strings.HasPrefix(e.Value, "stk_ph_") {
						t.Errorf("%s: %s is not a placeholder", c.Name, e.Name)
					}
				}
			}
		})
	}
}

func checkContainerSecurity(t *testing.T, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", c.Name)
		return
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s: runAsNonRoot must be true", c.Name)
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		t.Errorf("%s: runAsUser 0", c.Name)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem must be true", c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation must be false", c.Name)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", c.Name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities must drop ALL and add none", c.Name)
	}
}

// checkMounts fails for a mount of a volume the pod does not declare.
func checkMounts(t *testing.T, c corev1.Container, volumes map[string]*corev1.Volume) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok {
			t.Errorf("%s mounts volume %q, which the pod does not declare", c.Name, vm.Name)
		}
	}
}

// checkEnvRefs fails for a reference to a Secret or ConfigMap key that the
// manifests do not hold.
func checkEnvRefs(t *testing.T, c corev1.Container, m *manifests) {
	t.Helper()
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			s, ok := m.secrets[r.Name]
			if !ok {
				t.Errorf("%s: env %s: no Secret %s", c.Name, e.Name, r.Name)
			} else if !secretHas(s, r.Key) {
				t.Errorf("%s: env %s: Secret %s has no key %s", c.Name, e.Name, r.Name, r.Key)
			}
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			cm, ok := m.configMaps[r.Name]
			if !ok {
				t.Errorf("%s: env %s: no ConfigMap %s", c.Name, e.Name, r.Name)
			} else if _, ok := cm.Data[r.Key]; !ok {
				t.Errorf("%s: env %s: ConfigMap %s has no key %s", c.Name, e.Name, r.Name, r.Key)
			}
		}
	}
}

// checkVolumes fails for a volume whose Secret or ConfigMap (or item key)
// the manifests do not hold.
func checkVolumes(t *testing.T, volumes map[string]*corev1.Volume, m *manifests) {
	t.Helper()
	for name, v := range volumes {
		switch {
		case v.Secret != nil:
			s, ok := m.secrets[v.Secret.SecretName]
			if !ok {
				t.Errorf("volume %s: no Secret %s", name, v.Secret.SecretName)
				continue
			}
			for _, it := range v.Secret.Items {
				if !secretHas(s, it.Key) {
					t.Errorf("volume %s: Secret %s has no key %s", name, s.Name, it.Key)
				}
			}
		case v.ConfigMap != nil:
			cm, ok := m.configMaps[v.ConfigMap.Name]
			if !ok {
				t.Errorf("volume %s: no ConfigMap %s", name, v.ConfigMap.Name)
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					t.Errorf("volume %s: ConfigMap %s has no key %s", name, cm.Name, it.Key)
				}
			}
		case v.EmptyDir != nil, v.PersistentVolumeClaim != nil:
		default:
			t.Errorf("volume %s: unexpected kind; teach this test about it", name)
		}
	}
}

func secretHas(s *corev1.Secret, key string) bool {
	if _, ok := s.StringData[key]; ok {
		return true
	}
	_, ok := s.Data[key]
	return ok
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// checkMountedFrom fails unless c mounts, at exactly path, a volume that ok
// accepts.
func checkMountedFrom(t *testing.T, c corev1.Container, path string, volumes map[string]*corev1.Volume, ok func(*corev1.Volume) bool, what string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path && vm.SubPath == "" {
			if v := volumes[vm.Name]; v != nil && ok(v) {
				return
			}
			t.Errorf("%s: %s is mounted from volume %s, want %s", c.Name, path, vm.Name, what)
			return
		}
	}
	t.Errorf("%s: nothing mounted at %s (want %s)", c.Name, path, what)
}

// secretFile finds the Secret and key that the file at path in c comes
// from: a subPath mount of the file, or a directory mount of the Secret
// (whole, or through items).
func secretFile(c corev1.Container, path string, volumes map[string]*corev1.Volume) (secret, key string, ok bool) {
	for _, vm := range c.VolumeMounts {
		v := volumes[vm.Name]
		if v == nil || v.Secret == nil {
			continue
		}
		var rel string
		switch {
		case vm.SubPath != "" && vm.MountPath == path:
			rel = vm.SubPath
		case vm.SubPath == "" && strings.HasPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/"):
			rel = strings.TrimPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
		default:
			continue
		}
		if len(v.Secret.Items) == 0 {
			return v.Secret.SecretName, rel, true
		}
		for _, it := range v.Secret.Items {
			if it.Path == rel {
				return v.Secret.SecretName, it.Key, true
			}
		}
	}
	return "", "", false
}

func mountsFile(c corev1.Container, path string, volumes map[string]*corev1.Volume, m *manifests) bool {
	name, key, ok := secretFile(c, path, volumes)
	if !ok {
		return false
	}
	s, ok := m.secrets[name]
	return ok && secretHas(s, key)
}

func mountsSecretKey(c corev1.Container, path string, volumes map[string]*corev1.Volume, secret, key string) bool {
	name, k, ok := secretFile(c, path, volumes)
	return ok && name == secret && k == key
}

// checkProbe fails unless p is an HTTP GET of path on the admin port
// (by number, or by the name of a container port with that number).
func checkProbe(t *testing.T, what string, p *corev1.Probe, c corev1.Container, path, adminPort string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: %s must be an httpGet of %s on the admin port", c.Name, what, path)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s: %s path %q, want %s", c.Name, what, p.HTTPGet.Path, path)
	}
	port := p.HTTPGet.Port
	if port.Type == intstr.String {
		i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == port.StrVal })
		if i < 0 {
			t.Errorf("%s: %s names port %q, which the container does not declare", c.Name, what, port.StrVal)
			return
		}
		port = intstr.FromInt32(c.Ports[i].ContainerPort)
	}
	if strconv.Itoa(int(port.IntVal)) != adminPort {
		t.Errorf("%s: %s on port %d, want the admin port %s (proxy.admin_listen)", c.Name, what, port.IntVal, adminPort)
	}
	if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("%s: %s scheme %s; the admin listener speaks plain HTTP", c.Name, what, p.HTTPGet.Scheme)
	}
}
