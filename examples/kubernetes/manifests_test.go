// Package kubernetes holds example manifests that run the STACK control
// plane and agents beside sidecars that join it by workload identity; this
// test decodes them with the Kubernetes API types and checks their wiring,
// so they cannot rot silently.
package kubernetes

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/stackctl/stack/config"
)

// What the manifests promise, and the checks below hold them to.
const (
	dataDir     = "/var/lib/stack" // the image's STACK_HOME
	sidecarName = "stack"
	configMount = "/etc/stack"
	configKey   = "stack.yaml"
	// The sidecars' and the control plane's stack.yaml.
	sidecarConfigMap = "stack-config"
	controlConfigMap = "stack-control-config"
	// The interception CA's certificate: all an agent container mounts.
	agentCAConfigMap = "stack-ca"
	// The control plane's CA, which the sidecars trust.
	controlCAConfigMap = "stack-control-ca"
	// The interception CA and its KMS-wrapped key: the one Secret an
	// agent's pod mounts, in its sidecar only.
	sidecarSecret = "stack-sidecar"
	// The cluster publishes its CA in every namespace under this name.
	kubeRootCA = "kube-root-ca.crt"
	// The in-cluster service-account token issuer, and the audience
	// sidecars' tokens are projected for.
	clusterIssuer = "https://kubernetes.default.svc.cluster.local"
	tokenAudience = "stack"
	// How long a sidecar keeps trying to join at start before it gives up.
	joinStartTimeout = 2 * time.Minute
)

// key names a namespaced object.
type key struct{ ns, name string }

func (k key) String() string { return k.ns + "/" + k.name }

// workload is a pod template and what it belongs to.
type workload struct {
	kind string
	key
	tmpl *corev1.PodTemplateSpec
}

func (w workload) String() string { return w.kind + "/" + w.key.String() }

// manifests is everything in this directory, decoded.
type manifests struct {
	namespaces  map[string]*corev1.Namespace
	configMaps  map[key]*corev1.ConfigMap
	secrets     map[key]*corev1.Secret
	accounts    map[key]*corev1.ServiceAccount
	claims      map[key]*corev1.PersistentVolumeClaim
	services    map[key]*corev1.Service
	bindings    map[string]*rbacv1.ClusterRoleBinding
	deployments map[key]*appsv1.Deployment
	jobs        map[key]*batchv1.Job
	webhooks    map[string]*admissionregistrationv1.MutatingWebhookConfiguration
	workloads   []workload
	// namespaced are the namespaces every namespaced object names, by
	// where it is.
	namespaced map[string]string
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
		namespaces: map[string]*corev1.Namespace{}, configMaps: map[key]*corev1.ConfigMap{},
		secrets: map[key]*corev1.Secret{}, accounts: map[key]*corev1.ServiceAccount{},
		claims: map[key]*corev1.PersistentVolumeClaim{}, services: map[key]*corev1.Service{},
		bindings: map[string]*rbacv1.ClusterRoleBinding{}, deployments: map[key]*appsv1.Deployment{},
		jobs: map[key]*batchv1.Job{}, namespaced: map[string]string{},
		webhooks: map[string]*admissionregistrationv1.MutatingWebhookConfiguration{},
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
				Metadata   struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			k := key{meta.Metadata.Namespace, meta.Metadata.Name}
			switch meta.Kind {
			case "Namespace", "ClusterRoleBinding", "MutatingWebhookConfiguration":
				if k.ns != "" {
					t.Errorf("%s: %s %s is cluster-scoped but names namespace %s", where, meta.Kind, k.name, k.ns)
				}
			default:
				m.namespaced[where+" "+meta.Kind+" "+k.name] = k.ns
			}
			// UnmarshalStrict: a misspelt or misplaced field is an error, as
			// the API server's strict field validation would make it.
			switch meta.APIVersion + " " + meta.Kind {
			case "v1 Namespace":
				var o corev1.Namespace
				strict(t, where, doc, &o)
				m.namespaces[o.Name] = &o
			case "v1 ConfigMap":
				var o corev1.ConfigMap
				strict(t, where, doc, &o)
				m.configMaps[k] = &o
			case "v1 Secret":
				var o corev1.Secret
				strict(t, where, doc, &o)
				m.secrets[k] = &o
			case "v1 ServiceAccount":
				var o corev1.ServiceAccount
				strict(t, where, doc, &o)
				m.accounts[k] = &o
			case "v1 PersistentVolumeClaim":
				var o corev1.PersistentVolumeClaim
				strict(t, where, doc, &o)
				m.claims[k] = &o
			case "v1 Service":
				var o corev1.Service
				strict(t, where, doc, &o)
				m.services[k] = &o
			case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
				var o rbacv1.ClusterRoleBinding
				strict(t, where, doc, &o)
				m.bindings[o.Name] = &o
			case "admissionregistration.k8s.io/v1 MutatingWebhookConfiguration":
				var o admissionregistrationv1.MutatingWebhookConfiguration
				strict(t, where, doc, &o)
				m.webhooks[o.Name] = &o
			case "batch/v1 Job":
				var o batchv1.Job
				strict(t, where, doc, &o)
				m.jobs[k] = &o
				m.workloads = append(m.workloads, workload{"Job", k, &o.Spec.Template})
			case "apps/v1 Deployment":
				var o appsv1.Deployment
				strict(t, where, doc, &o)
				m.deployments[k] = &o
				m.workloads = append(m.workloads, workload{"Deployment", k, &o.Spec.Template})
				if o.Spec.Selector == nil {
					t.Errorf("%s: Deployment %s has no selector", where, o.Name)
				} else {
					for sk, sv := range o.Spec.Selector.MatchLabels {
						if o.Spec.Template.Labels[sk] != sv {
							t.Errorf("%s: selector %s=%s does not match the pod template's labels", where, sk, sv)
						}
					}
				}
			default:
				t.Fatalf("%s: unexpected %q %q: teach this test about it", where, meta.APIVersion, meta.Kind)
			}
		}
	}
	if len(m.workloads) == 0 {
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

// loadConfig loads a ConfigMap's stack.yaml with the real config loader,
// which rejects unknown keys and invalid values.
func loadConfig(t *testing.T, m *manifests, cm key) *config.Config {
	t.Helper()
	c, ok := m.configMaps[cm]
	if !ok {
		t.Fatalf("no ConfigMap %s", cm)
	}
	text, ok := c.Data[configKey]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", cm, configKey)
	}
	file := filepath.Join(t.TempDir(), configKey)
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
		t.Fatalf("ConfigMap %s: %s does not load: %v", cm, configKey, err)
	}
	return cfg
}

// controlPlane finds the one workload that runs `stack control`, and its
// container.
func controlPlane(t *testing.T, m *manifests) (workload, corev1.Container) {
	t.Helper()
	var found []workload
	var ctr corev1.Container
	for _, w := range m.workloads {
		for _, c := range w.tmpl.Spec.Containers {
			if subcommand(c.Args) == "control" {
				found = append(found, w)
				ctr = c
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("workloads running `stack control`: %v, want one", found)
	}
	return found[0], ctr
}

// agentWorkloads are the workloads with a sidecar.
func agentWorkloads(m *manifests) []workload {
	var out []workload
	for _, w := range m.workloads {
		if slices.ContainsFunc(w.tmpl.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == sidecarName }) {
			out = append(out, w)
		}
	}
	return out
}

// subcommand is the first argument that is not a flag: the stack command.
func subcommand(args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

// flagValue returns the value of --name=VALUE in args, and whether there
// is exactly one.
func flagValue(args []string, name string) (string, bool) {
	var vals []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			vals = append(vals, v)
		}
	}
	if len(vals) != 1 {
		return "", false
	}
	return vals[0], true
}

func TestManifestsDecode(t *testing.T) {
	m := load(t)
	for k, s := range m.secrets {
		if s.Type != "" && s.Type != corev1.SecretTypeOpaque {
			t.Errorf("Secret %s: type %s, want Opaque", k, s.Type)
		}
	}
	for k, j := range m.jobs {
		if p := j.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyNever && p != corev1.RestartPolicyOnFailure {
			t.Errorf("Job %s: restartPolicy %q; a Job needs Never or OnFailure", k, p)
		}
	}
	// Every object names its namespace, one of those the manifests create:
	// the control plane's rules and the sidecars' URL depend on them.
	for what, ns := range m.namespaced {
		if _, ok := m.namespaces[ns]; !ok {
			t.Errorf("%s: namespace %q is not one of namespaces.yaml's", what, ns)
		}
	}
	for name, ns := range m.namespaces {
		if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Errorf("Namespace %s: want pod-security.kubernetes.io/enforce: restricted", name)
		}
	}
	// Only the binding the workload verifier needs, to the documents of
	// public keys and nothing else.
	for name, b := range m.bindings {
		if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != "system:service-account-issuer-discovery" {
			t.Errorf("ClusterRoleBinding %s binds %s %s; the examples need system:service-account-issuer-discovery alone", name, b.RoleRef.Kind, b.RoleRef.Name)
		}
	}
}

func TestSidecarConfig(t *testing.T) {
	m := load(t)
	for _, w := range agentWorkloads(m) {
		cfg := loadConfig(t, m, key{w.ns, sidecarConfigMap})
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
		if cfg.Proxy.PassportFile != "" {
			t.Errorf("proxy.passport_file %q: a joined sidecar gets its passport from the control plane", cfg.Proxy.PassportFile)
		}
		if cfg.Control.JoinToken != "" {
			t.Error("control.join_token is set: sidecars join with their workload token, and a token is a secret")
		}
	}
}

// The control plane: one replica on a persistent volume, a Service the
// sidecars dial, and rules that map each agent workload's service account
// to an agent.
func TestControlPlane(t *testing.T) {
	m := load(t)
	w, ctr := controlPlane(t, m)
	spec := &w.tmpl.Spec
	volumes := podVolumes(spec)
	cfg := loadConfig(t, m, key{w.ns, controlConfigMap})

	dep, ok := m.deployments[w.key]
	if !ok {
		t.Fatalf("%s: the control plane must be a Deployment", w)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Error("the control plane's state is bbolt files with one writer: want replicas: 1 and strategy Recreate")
	}
	checkPodIdentity(t, m, w)
	for _, c := range allContainers(spec) {
		checkContainerSecurity(t, c)
		checkMounts(t, c, volumes)
		checkEnvRefs(t, c, m, w.ns)
	}
	checkVolumes(t, volumes, m, w.ns)

	if !slices.Contains(ctr.Args, "--config="+configMount+"/"+configKey) {
		t.Errorf("control args %q: want --config=%s/%s", ctr.Args, configMount, configKey)
	}
	checkMountedFrom(t, ctr, configMount, volumes, func(v *corev1.Volume) bool {
		return v.ConfigMap != nil && v.ConfigMap.Name == controlConfigMap
	}, "ConfigMap "+controlConfigMap)
	if env(ctr, "STACK_HOME") != dataDir {
		t.Errorf("control STACK_HOME = %q, want %s", env(ctr, "STACK_HOME"), dataDir)
	}
	// Its state is written while it runs: a claim, not a Secret.
	checkMountedFrom(t, ctr, dataDir, volumes, func(v *corev1.Volume) bool {
		if v.PersistentVolumeClaim == nil {
			return false
		}
		_, ok := m.claims[key{w.ns, v.PersistentVolumeClaim.ClaimName}]
		return ok
	}, "a PersistentVolumeClaim of the manifests")
	if strings.HasPrefix(cfg.KMS.URI, "local://") {
		t.Errorf("kms.uri %q: a key file beside the keys it wraps protects nothing; use a cloud KMS", cfg.KMS.URI)
	}
	initRan := false
	for _, c := range spec.InitContainers {
		if subcommand(c.Args) == "init" && slices.Contains(c.Args, "--control") && mountedAt(c, dataDir) == mountedAt(ctr, dataDir) {
			initRan = true
		}
	}
	if !initRan {
		t.Error("no init container runs `stack init --control` in the control plane's data directory")
	}

	// It serves on the port the Service sends to, with a certificate for
	// the Service's names.
	_, port, err := net.SplitHostPort(cfg.Control.Listen)
	if err != nil {
		t.Fatalf("control.listen %q: %v", cfg.Control.Listen, err)
	}
	named := containerPortName(ctr, port)
	if named == "" {
		t.Errorf("control.listen %s: the container declares no port %s", cfg.Control.Listen, port)
	}
	checkProbe(t, "startupProbe", ctr.StartupProbe, ctr, "/readyz", port, corev1.URISchemeHTTPS)
	checkProbe(t, "readinessProbe", ctr.ReadinessProbe, ctr, "/readyz", port, corev1.URISchemeHTTPS)
	checkProbe(t, "livenessProbe", ctr.LivenessProbe, ctr, "/healthz", port, corev1.URISchemeHTTPS)
	svc := controlService(t, m, w)
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
		return p.TargetPort.String() == port || (named != "" && p.TargetPort.String() == named)
	}) {
		t.Errorf("Service %s sends no port to control.listen's %s", svc.Name, port)
	}
	for _, h := range []string{svc.Name + "." + svc.Namespace + ".svc", svc.Name + "." + svc.Namespace + ".svc.cluster.local"} {
		if !slices.Contains(cfg.Control.Hosts, h) {
			t.Errorf("control.hosts %q lacks %s: its certificate would not be valid for it", cfg.Control.Hosts, h)
		}
	}

	// Workload identity: the cluster's issuer, the audience the sidecars'
	// tokens are projected for, the cluster CA, and rules.
	is := clusterIssuerConfig(t, cfg)
	if is.Audience != tokenAudience {
		t.Errorf("oidc_issuers %s: audience %q, want %s", is.Issuer, is.Audience, tokenAudience)
	}
	if src, ok := sourceFile(ctr, is.CAFile, volumes); !ok || src.kind != "ConfigMap" || src.name != kubeRootCA || src.key != "ca.crt" {
		t.Errorf("oidc_issuers %s: ca_file %s is not ca.crt of ConfigMap %s mounted in the control plane (%+v)", is.Issuer, is.CAFile, kubeRootCA, src)
	}
	if len(is.Rules) == 0 {
		t.Fatal("oidc_issuers: no rules")
	}
	for i, r := range is.Rules {
		if r.Claims["kubernetes.io/namespace"] == "" || r.Claims["kubernetes.io/serviceaccount/name"] == "" {
			t.Errorf("rule %d (%s): claims %v: want kubernetes.io/namespace and kubernetes.io/serviceaccount/name", i, r.Agent, r.Claims)
		}
		sa := key{r.Claims["kubernetes.io/namespace"], r.Claims["kubernetes.io/serviceaccount/name"]}
		if _, ok := m.accounts[sa]; !ok {
			t.Errorf("rule %d (%s) names ServiceAccount %s, which the manifests do not have", i, r.Agent, sa)
		}
	}
	// Every agent workload is mapped to an agent, and to a different one
	// where they differ in service account.
	agents := map[string]key{}
	for _, aw := range agentWorkloads(m) {
		sa := key{aw.ns, aw.tmpl.Spec.ServiceAccountName}
		agent := ruleFor(is.Rules, sa)
		if agent == "" {
			t.Errorf("%s: no rule maps ServiceAccount %s to an agent", aw, sa)
			continue
		}
		if prev, ok := agents[agent]; ok && prev != sa {
			t.Errorf("agent %s is both ServiceAccount %s and %s", agent, prev, sa)
		}
		agents[agent] = sa
	}

	// It needs to read the issuer's discovery document without a token.
	bound := false
	for _, b := range m.bindings {
		for _, s := range b.Subjects {
			bound = bound || (s.Kind == "Group" && s.Name == "system:unauthenticated")
		}
	}
	if !bound {
		t.Error("no ClusterRoleBinding lets the control plane read the cluster issuer's discovery document (it sends no token)")
	}
}

// clusterIssuerConfig returns control.oidc_issuers' entry for the cluster.
func clusterIssuerConfig(t *testing.T, cfg *config.Config) config.OIDCIssuerConfig {
	t.Helper()
	for _, is := range cfg.Control.OIDCIssuers {
		if is.Issuer == clusterIssuer {
			return is
		}
	}
	t.Fatalf("control.oidc_issuers has no %s", clusterIssuer)
	return config.OIDCIssuerConfig{}
}

// ruleFor is the agent of the first rule matching a token of the service
// account sa, as the control plane maps it (glob values allowed).
func ruleFor(rules []config.OIDCRuleConfig, sa key) string {
	claims := map[string]string{"kubernetes.io/namespace": sa.ns, "kubernetes.io/serviceaccount/name": sa.name}
	for _, r := range rules {
		all := len(r.Claims) > 0
		for c, want := range r.Claims {
			got, ok := claims[c]
			if ok {
				ok, _ = path.Match(want, got)
			}
			all = all && ok
		}
		if all {
			return r.Agent
		}
	}
	return ""
}

// controlService is the Service that selects the control plane's pods.
func controlService(t *testing.T, m *manifests, w workload) *corev1.Service {
	t.Helper()
	for k, s := range m.services {
		if k.ns != w.ns || len(s.Spec.Selector) == 0 {
			continue
		}
		match := true
		for sk, sv := range s.Spec.Selector {
			match = match && w.tmpl.Labels[sk] == sv
		}
		if match {
			if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
				t.Errorf("Service %s: type %s; the control plane is for the cluster's sidecars: ClusterIP", k, s.Spec.Type)
			}
			return s
		}
	}
	t.Fatalf("no Service selects %s", w)
	return nil
}

// The heart of it: in every agent workload the sidecar is a native
// sidecar that joins the control plane with the pod's projected token, and
// the pod holds no issuer key, vault, passport or real credential.
func TestWorkloadWiring(t *testing.T) {
	m := load(t)
	cw, cctr := controlPlane(t, m)
	ccfg := loadConfig(t, m, key{cw.ns, controlConfigMap})
	svc := controlService(t, m, cw)
	issuer := clusterIssuerConfig(t, ccfg)
	_, controlPort, _ := net.SplitHostPort(ccfg.Control.Listen)

	agents := agentWorkloads(m)
	if len(agents) == 0 {
		t.Fatal("no workload with a sidecar")
	}
	for _, w := range agents {
		t.Run(w.String(), func(t *testing.T) {
			cfg := loadConfig(t, m, key{w.ns, sidecarConfigMap})
			_, listenPort, _ := net.SplitHostPort(cfg.Proxy.Listen)
			_, adminPort, _ := net.SplitHostPort(cfg.Proxy.AdminListen)
			wantProxy := "http://127.0.0.1:" + listenPort
			spec := &w.tmpl.Spec
			volumes := podVolumes(spec)

			checkPodIdentity(t, m, w)
			all := allContainers(spec)
			for _, c := range all {
				checkContainerSecurity(t, c)
				checkMounts(t, c, volumes)
				checkEnvRefs(t, c, m, w.ns)
			}
			checkVolumes(t, volumes, m, w.ns)

			// The sidecar: an init container that never stops, so the agent
			// starts after it and a Job still completes.
			si := slices.IndexFunc(spec.InitContainers, func(c corev1.Container) bool { return c.Name == sidecarName })
			sc := spec.InitContainers[si]
			if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Errorf("init container %s: restartPolicy must be Always (a native sidecar)", sc.Name)
			}
			if subcommand(sc.Args) != "proxy" {
				t.Errorf("sidecar args %q do not run `stack proxy`", sc.Args)
			}
			if !slices.Contains(sc.Args, "--config="+configMount+"/"+configKey) {
				t.Errorf("sidecar args %q: want --config=%s/%s", sc.Args, configMount, configKey)
			}
			checkMountedFrom(t, sc, configMount, volumes, func(v *corev1.Volume) bool {
				return v.ConfigMap != nil && v.ConfigMap.Name == sidecarConfigMap
			}, "ConfigMap "+sidecarConfigMap)
			if env(sc, "STACK_HOME") != dataDir {
				t.Errorf("sidecar STACK_HOME = %q, want %s", env(sc, "STACK_HOME"), dataDir)
			}
			if e := envVar(sc, "POD_NAME"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Error("sidecar POD_NAME must come from metadata.name: it names the sidecar on the control plane")
			}
			checkMountedFrom(t, sc, dataDir, volumes, func(v *corev1.Volume) bool {
				return v.EmptyDir != nil || v.PersistentVolumeClaim != nil
			}, "a writable emptyDir or PVC")
			for _, f := range []string{"ca.pem", "ca-key.json"} {
				if src, ok := sourceFile(sc, dataDir+"/"+f, volumes); !ok || src.kind != "Secret" || src.name != sidecarSecret || !secretHas(m.secrets[key{w.ns, src.name}], src.key) {
					t.Errorf("sidecar: %s/%s is not a key of Secret %s", dataDir, f, sidecarSecret)
				}
			}

			// Joining: the control plane's Service, its CA, and the pod's
			// token for the audience the control plane expects.
			rawURL, ok := flagValue(sc.Args, "control")
			if !ok {
				t.Fatalf("sidecar args %q: want one --control=URL", sc.Args)
			}
			u, err := url.Parse(rawURL)
			if err != nil || u.Scheme != "https" {
				t.Fatalf("--control %q: want https://HOST:PORT", rawURL)
			}
			if !slices.Contains(ccfg.Control.Hosts, u.Hostname()) || !strings.HasPrefix(u.Hostname(), svc.Name+"."+svc.Namespace+".") {
				t.Errorf("--control host %s: want Service %s/%s's name, one of control.hosts %q", u.Hostname(), svc.Namespace, svc.Name, ccfg.Control.Hosts)
			}
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
				return strconv.Itoa(int(p.Port)) == u.Port() && (p.TargetPort.String() == controlPort || p.TargetPort.String() == containerPortName(cctr, controlPort))
			}) {
				t.Errorf("--control port %s is not a port of Service %s that reaches control.listen", u.Port(), svc.Name)
			}
			caFile, ok := flagValue(sc.Args, "control-ca")
			if src, found := sourceFile(sc, caFile, volumes); !ok || !found || src.kind != "ConfigMap" || src.name != controlCAConfigMap || src.key != "ca.pem" {
				t.Errorf("--control-ca %q is not ca.pem of ConfigMap %s", caFile, controlCAConfigMap)
			}
			tokenFile, ok := flagValue(sc.Args, "oidc-token-file")
			if !ok {
				t.Fatalf("sidecar args %q: want one --oidc-token-file=FILE", sc.Args)
			}
			src, found := sourceFile(sc, tokenFile, volumes)
			switch {
			case !found || src.kind != "ServiceAccountToken":
				t.Errorf("--oidc-token-file %s is not a projected service-account token", tokenFile)
			case src.token.Audience != tokenAudience || src.token.Audience != issuer.Audience:
				t.Errorf("projected token audience %q, want %s (the control plane's oidc_issuers audience %q)", src.token.Audience, tokenAudience, issuer.Audience)
			case src.token.ExpirationSeconds == nil || *src.token.ExpirationSeconds != 3600:
				t.Error("projected token: want expirationSeconds: 3600")
			}
			for _, c := range all {
				if c.Name != sc.Name && src.volume != "" && slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.Name == src.volume }) {
					t.Errorf("%s mounts the token volume %s; only the sidecar may join as the agent", c.Name, src.volume)
				}
			}
			if _, ok := flagValue(sc.Args, "join-token"); ok || slices.ContainsFunc(sc.Args, func(a string) bool { return strings.Contains(a, "stkj_") }) {
				t.Error("sidecar args carry a join token: a secret in a manifest, and spent after one pod")
			}

			// Probes on the admin port: started (and so the agent let in)
			// once joined and ready, restarted when unhealthy.
			checkProbe(t, "startupProbe", sc.StartupProbe, sc, "/readyz", adminPort, corev1.URISchemeHTTP)
			checkProbe(t, "readinessProbe", sc.ReadinessProbe, sc, "/readyz", adminPort, corev1.URISchemeHTTP)
			checkProbe(t, "livenessProbe", sc.LivenessProbe, sc, "/healthz", adminPort, corev1.URISchemeHTTP)
			if p := sc.StartupProbe; p != nil && time.Duration(p.PeriodSeconds*p.FailureThreshold)*time.Second < joinStartTimeout {
				t.Errorf("startupProbe allows %ds; the sidecar tries to join for %s before it listens", p.PeriodSeconds*p.FailureThreshold, joinStartTimeout)
			}

			// Init containers before the sidecar run to completion first:
			// `stack init` makes its data directory; none uses the proxy.
			madeHome := false
			for _, c := range spec.InitContainers[:si] {
				if c.RestartPolicy != nil {
					t.Errorf("init container %s before the sidecar has a restartPolicy", c.Name)
				}
				if env(c, "HTTPS_PROXY") != "" {
					t.Errorf("init container %s uses the proxy before it starts", c.Name)
				}
				if subcommand(c.Args) == "init" && mountedAt(c, dataDir) == mountedAt(sc, dataDir) {
					madeHome = true
				}
			}
			if !madeHome {
				t.Error("no init container runs `stack init` in the sidecar's data directory")
			}

			// Nothing of the fleet's in the pod: no issuer key, vault,
			// passport or real credential, in a file or in the environment.
			for _, c := range all {
				if slices.Contains(c.Args, "vault") || slices.Contains(c.Args, "passport") {
					t.Errorf("%s runs %q: the vault and passports are the control plane's", c.Name, c.Args)
				}
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						t.Errorf("%s: env %s comes from Secret %s; the pod holds no credential", c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name)
					}
				}
				for _, vm := range c.VolumeMounts {
					v := volumes[vm.Name]
					if v != nil && v.Secret != nil && (v.Secret.SecretName != sidecarSecret || c.Name == "agent") {
						t.Errorf("%s mounts Secret %s; only the sidecar mounts a Secret, %s", c.Name, v.Secret.SecretName, sidecarSecret)
					}
				}
			}
			if s := m.secrets[key{w.ns, sidecarSecret}]; s != nil {
				for k := range s.StringData {
					if k != "ca.pem" && k != "ca-key.json" {
						t.Errorf("Secret %s holds %s; it holds the interception CA and nothing else", sidecarSecret, k)
					}
				}
				for k := range s.Data {
					if k != "ca.pem" && k != "ca-key.json" {
						t.Errorf("Secret %s holds %s; it holds the interception CA and nothing else", sidecarSecret, k)
					}
				}
			}

			// The agent containers: proxy, NO_PROXY and CA wiring, and no
			// access to anything of the sidecar's but the CA certificate.
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
						if src, ok := sourceFile(c, p, volumes); !ok || src.kind != "ConfigMap" || src.name != agentCAConfigMap || src.key != "ca.pem" {
							t.Errorf("%s: %s = %s is not ca.pem of ConfigMap %s", c.Name, k, p, agentCAConfigMap)
						}
					}
				}
				if caVars == 0 {
					t.Errorf("%s: no CA bundle variable points at the sidecar's CA", c.Name)
				}
				for _, vm := range c.VolumeMounts {
					v := volumes[vm.Name]
					switch {
					case v == nil:
					case v.ConfigMap != nil && v.ConfigMap.Name != agentCAConfigMap,
						v.Secret != nil, v.Projected != nil, v.PersistentVolumeClaim != nil:
						t.Errorf("%s mounts volume %s; an agent mounts ConfigMap %s and its own emptyDirs only", c.Name, vm.Name, agentCAConfigMap)
					case v.EmptyDir != nil && slices.ContainsFunc(sc.VolumeMounts, func(s corev1.VolumeMount) bool { return s.Name == vm.Name }):
						t.Errorf("%s shares volume %s with the sidecar", c.Name, vm.Name)
					}
				}
				for _, e := range c.Env {
					if strings.HasSuffix(e.Name, "_API_KEY") && !strings.HasPrefix(e.Value, "stk_ph_") {
						t.Errorf("%s: %s is not a placeholder", c.Name, e.Name)
					}
				}
				for _, a := range c.Args {
					if _, cred, ok := strings.Cut(a, "Bearer "); ok && !strings.HasPrefix(cred, "stk_ph_") {
						t.Errorf("%s sends a credential that is not a placeholder: %q", c.Name, a)
					}
				}
			}
		})
	}
}

// checkPodIdentity: the pod's ServiceAccount exists beside it and neither
// it nor the pod mounts an API token.
func checkPodIdentity(t *testing.T, m *manifests, w workload) {
	t.Helper()
	spec := &w.tmpl.Spec
	sa, ok := m.accounts[key{w.ns, spec.ServiceAccountName}]
	if !ok {
		t.Errorf("%s: serviceAccountName %q: no such ServiceAccount in namespace %s", w, spec.ServiceAccountName, w.ns)
	} else if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s mounts an API token; nothing here needs one", sa.Name)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false on the pod", w)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot must be true", w)
	}
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext.runAsUser must be set and not 0", w)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile must be RuntimeDefault (the restricted Pod Security Standard)", w)
	}
}

func podVolumes(spec *corev1.PodSpec) map[string]*corev1.Volume {
	volumes := map[string]*corev1.Volume{}
	for i := range spec.Volumes {
		volumes[spec.Volumes[i].Name] = &spec.Volumes[i]
	}
	return volumes
}

func allContainers(spec *corev1.PodSpec) []corev1.Container {
	return append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...)
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
// manifests do not hold in namespace ns.
func checkEnvRefs(t *testing.T, c corev1.Container, m *manifests, ns string) {
	t.Helper()
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			s, ok := m.secrets[key{ns, r.Name}]
			if !ok {
				t.Errorf("%s: env %s: no Secret %s/%s", c.Name, e.Name, ns, r.Name)
			} else if !secretHas(s, r.Key) {
				t.Errorf("%s: env %s: Secret %s/%s has no key %s", c.Name, e.Name, ns, r.Name, r.Key)
			}
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			cm, ok := m.configMaps[key{ns, r.Name}]
			if !ok {
				t.Errorf("%s: env %s: no ConfigMap %s/%s", c.Name, e.Name, ns, r.Name)
			} else if _, ok := cm.Data[r.Key]; !ok {
				t.Errorf("%s: env %s: ConfigMap %s/%s has no key %s", c.Name, e.Name, ns, r.Name, r.Key)
			}
		}
	}
}

// checkVolumes fails for a volume whose Secret, ConfigMap, claim (or item
// key) the manifests do not hold in namespace ns.
func checkVolumes(t *testing.T, volumes map[string]*corev1.Volume, m *manifests, ns string) {
	t.Helper()
	configMap := func(name string, items []corev1.KeyToPath) {
		if name == kubeRootCA {
			return // published by the cluster in every namespace
		}
		cm, ok := m.configMaps[key{ns, name}]
		if !ok {
			t.Errorf("no ConfigMap %s/%s", ns, name)
			return
		}
		for _, it := range items {
			if _, ok := cm.Data[it.Key]; !ok {
				t.Errorf("ConfigMap %s/%s has no key %s", ns, name, it.Key)
			}
		}
	}
	for name, v := range volumes {
		switch {
		case v.Secret != nil:
			s, ok := m.secrets[key{ns, v.Secret.SecretName}]
			if !ok {
				t.Errorf("volume %s: no Secret %s/%s", name, ns, v.Secret.SecretName)
				continue
			}
			for _, it := range v.Secret.Items {
				if !secretHas(s, it.Key) {
					t.Errorf("volume %s: Secret %s has no key %s", name, s.Name, it.Key)
				}
			}
		case v.ConfigMap != nil:
			configMap(v.ConfigMap.Name, v.ConfigMap.Items)
		case v.PersistentVolumeClaim != nil:
			if _, ok := m.claims[key{ns, v.PersistentVolumeClaim.ClaimName}]; !ok {
				t.Errorf("volume %s: no PersistentVolumeClaim %s/%s", name, ns, v.PersistentVolumeClaim.ClaimName)
			}
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				switch {
				case s.ServiceAccountToken != nil:
				case s.ConfigMap != nil:
					configMap(s.ConfigMap.Name, s.ConfigMap.Items)
				default:
					t.Errorf("volume %s: unexpected projected source; teach this test about it", name)
				}
			}
		case v.EmptyDir != nil:
		default:
			t.Errorf("volume %s: unexpected kind; teach this test about it", name)
		}
	}
}

func secretHas(s *corev1.Secret, key string) bool {
	if s == nil {
		return false
	}
	if _, ok := s.StringData[key]; ok {
		return true
	}
	_, ok := s.Data[key]
	return ok
}

func env(c corev1.Container, name string) string {
	if e := envVar(c, name); e != nil {
		return e.Value
	}
	return ""
}

func envVar(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// mountedAt is the volume c mounts at exactly dir.
func mountedAt(c corev1.Container, dir string) string {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == dir && vm.SubPath == "" {
			return vm.Name
		}
	}
	return ""
}

// containerPortName is the name of c's port number port, if it has one.
func containerPortName(c corev1.Container, port string) string {
	for _, p := range c.Ports {
		if strconv.Itoa(int(p.ContainerPort)) == port {
			return p.Name
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

// source is where a file in a container comes from: a key of a Secret or
// ConfigMap, or a projected service-account token.
type source struct {
	kind, name, key string
	volume          string
	token           *corev1.ServiceAccountTokenProjection
}

// sourceFile finds where the file at path in c comes from: a subPath
// mount of the file, or a directory mount of a Secret, ConfigMap or
// projected volume (whole, or through items).
func sourceFile(c corev1.Container, path string, volumes map[string]*corev1.Volume) (source, bool) {
	for _, vm := range c.VolumeMounts {
		v := volumes[vm.Name]
		if v == nil {
			continue
		}
		var rel string
		dir := strings.TrimSuffix(vm.MountPath, "/") + "/"
		switch {
		case vm.SubPath != "" && vm.MountPath == path:
			rel = vm.SubPath
		case vm.SubPath == "" && strings.HasPrefix(path, dir):
			rel = strings.TrimPrefix(path, dir)
		default:
			continue
		}
		byItems := func(kind, name string, items []corev1.KeyToPath) (source, bool) {
			if len(items) == 0 {
				return source{kind: kind, name: name, key: rel, volume: vm.Name}, true
			}
			for _, it := range items {
				if it.Path == rel {
					return source{kind: kind, name: name, key: it.Key, volume: vm.Name}, true
				}
			}
			return source{}, false
		}
		switch {
		case v.Secret != nil:
			return byItems("Secret", v.Secret.SecretName, v.Secret.Items)
		case v.ConfigMap != nil:
			return byItems("ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				switch {
				case s.ServiceAccountToken != nil && s.ServiceAccountToken.Path == rel:
					return source{kind: "ServiceAccountToken", volume: vm.Name, token: s.ServiceAccountToken}, true
				case s.ConfigMap != nil:
					if src, ok := byItems("ConfigMap", s.ConfigMap.Name, s.ConfigMap.Items); ok {
						return src, true
					}
				}
			}
		}
	}
	return source{}, false
}

// checkProbe fails unless p is an HTTP GET of path on port (by number,
// or by the name of a container port with that number) with scheme.
func checkProbe(t *testing.T, what string, p *corev1.Probe, c corev1.Container, path, port string, scheme corev1.URIScheme) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: %s must be an httpGet of %s on port %s", c.Name, what, path, port)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s: %s path %q, want %s", c.Name, what, p.HTTPGet.Path, path)
	}
	pp := p.HTTPGet.Port
	if pp.Type == intstr.String {
		i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == pp.StrVal })
		if i < 0 {
			t.Errorf("%s: %s names port %q, which the container does not declare", c.Name, what, pp.StrVal)
			return
		}
		pp = intstr.FromInt32(c.Ports[i].ContainerPort)
	}
	if strconv.Itoa(int(pp.IntVal)) != port {
		t.Errorf("%s: %s on port %d, want %s", c.Name, what, pp.IntVal, port)
	}
	got := p.HTTPGet.Scheme
	if got == "" {
		got = corev1.URISchemeHTTP
	}
	if got != scheme {
		t.Errorf("%s: %s scheme %s, want %s", c.Name, what, got, scheme)
	}
}

// String makes a source readable in failures.
func (s source) String() string {
	if s.token != nil {
		return fmt.Sprintf("token(audience %s)", s.token.Audience)
	}
	return s.kind + " " + s.name + "/" + s.key
}
