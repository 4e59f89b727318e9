// Package admission is the Kubernetes mutating admission webhook that
// gives pods labelled stack.run/agent: NAME the STACK sidecar, as
// examples/kubernetes/deployment.yaml writes it by hand.
//
// # Basics
//
// The control plane serves it at Path. For each pod the API server sends
// (the MutatingWebhookConfiguration selects pods with the label), Review
// answers an AdmissionReview v1 with a JSON patch that adds:
//
//   - two init containers ahead of the pod's own: stack-init (`stack
//     init`, which keeps the interception CA from the stack-sidecar
//     Secret) and stack, the sidecar itself as a native sidecar
//     (restartPolicy: Always) with startup, readiness and liveness probes
//     and a restricted security context, joining the control plane with a
//     projected service-account token of audience stack, and told the
//     agent it must join as (control.agent);
//   - the volumes they use;
//   - in every app container, the proxy (HTTPS_PROXY, HTTP_PROXY), NO_PROXY
//     and the CA bundle under each name the common runtimes read
//     (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS,
//     CURL_CA_BUNDLE), mounted from the stack-ca ConfigMap.
//
// The proxy variables are STACK's whatever the container says (an agent
// that bypasses its sidecar is what the sidecar is there to prevent); NO_PROXY
// and the CA variables are set only where the container sets none.
//
// # Caveats
//
// Mutating a pod that already has what Review adds changes nothing, so a
// reinvocation is harmless. Review reads nothing from the API server: the
// ConfigMaps and the Secret the pod mounts must exist in its namespace
// (examples/kubernetes/ca.yaml and configmap.yaml). A pod without the
// label is let through untouched.
package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stackctl/stack/passport"
)

// What the webhook reads and writes on a pod.
const (
	// LabelAgent marks a pod for the sidecar; its value is the agent the
	// sidecar must join as.
	LabelAgent = "stack.run/agent"
	// AnnotationInjected records, on a mutated pod, the agent it was
	// given a sidecar for.
	AnnotationInjected = "stack.run/injected"
	// Path is where the control plane serves the webhook.
	Path = "/k8s/mutate"
)

// The names the injected sidecar uses: its containers, its volumes and
// the objects they come from.
const (
	InitName      = "stack-init"
	SidecarName   = "stack"
	dataVolume    = "stack-data"
	tmpVolume     = "stack-tmp"
	configVolume  = "stack-config"  // ConfigMap stack-config: the sidecars' stack.yaml
	sidecarVolume = "stack-sidecar" // Secret stack-sidecar: the interception CA and its wrapped key
	controlCA     = "stack-control-ca"
	tokenVolume   = "stack-token"
	caVolume      = "stack-ca" // ConfigMap stack-ca: the interception CA's certificate
	dataDir       = "/var/lib/stack"
	caDir         = "/etc/stack-ca"
	tokenDir      = "/var/run/secrets/stack"
)

// Defaults of Options.
const (
	DefaultAudience        = "stack"
	DefaultTokenExpiration = 3600
	DefaultProxyPort       = 8080
	DefaultAdminPort       = 9090
	// maxReview bounds a review's body; the API server sends at most a
	// few MB.
	maxReview = 8 << 20
)

// Options say what to inject.
type Options struct {
	// Image is the STACK image the sidecar runs. Required.
	Image string
	// PullPolicy is its pull policy: IfNotPresent (the default), Always
	// or Never.
	PullPolicy string
	// ControlURL is where the sidecars join the control plane (its
	// Service's name inside the cluster). Required.
	ControlURL string
	// Audience is the projected token's audience (DefaultAudience).
	Audience string
	// TokenExpiration is the projected token's life in seconds
	// (DefaultTokenExpiration).
	TokenExpiration int64
	// ProxyPort and AdminPort are the sidecar's listeners.
	ProxyPort, AdminPort int32
}

// Webhook mutates labelled pods.
type Webhook struct{ opts Options }

// New checks opts and fills in the defaults.
func New(opts Options) (*Webhook, error) {
	if opts.Image == "" || opts.ControlURL == "" {
		return nil, errors.New("admission webhook: the sidecar's image and the control plane's URL are required (control.webhook.image, control.webhook.control_url)")
	}
	switch corev1.PullPolicy(opts.PullPolicy) {
	case "":
		opts.PullPolicy = string(corev1.PullIfNotPresent)
	case corev1.PullIfNotPresent, corev1.PullAlways, corev1.PullNever:
	default:
		return nil, fmt.Errorf("admission webhook: pull policy %q: want IfNotPresent, Always or Never", opts.PullPolicy)
	}
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	if opts.TokenExpiration <= 0 {
		opts.TokenExpiration = DefaultTokenExpiration
	}
	if opts.ProxyPort <= 0 {
		opts.ProxyPort = DefaultProxyPort
	}
	if opts.AdminPort <= 0 {
		opts.AdminPort = DefaultAdminPort
	}
	return &Webhook{opts: opts}, nil
}

// ServeHTTP answers one AdmissionReview v1. A request that is not one is
// 400 with what is wrong; a pod that cannot be given a sidecar is denied
// in the review's response, with why.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(rw, "admission webhook: POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReview+1))
	if err != nil || len(body) > maxReview {
		http.Error(rw, fmt.Sprintf("admission webhook: a review of at most %d bytes", maxReview), http.StatusRequestEntityTooLarge)
		return
	}
	out, err := w.Review(body)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Write(out)
}

// ErrBadReview: the body is not an AdmissionReview v1 with a request.
var ErrBadReview = errors.New("admission webhook: not an AdmissionReview")

// Review answers the AdmissionReview v1 in body.
func (w *Webhook) Review(body []byte) ([]byte, error) {
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReview, err)
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("%w: apiVersion %q kind %q, want admission.k8s.io/v1 AdmissionReview", ErrBadReview, review.APIVersion, review.Kind)
	}
	req := review.Request
	if req == nil || req.UID == "" {
		return nil, fmt.Errorf("%w: no request, or a request without a uid", ErrBadReview)
	}
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Kind == "Pod" && req.Kind.Group == "" && len(req.Object.Raw) > 0 {
		patch, err := w.patch(req.Object.Raw)
		if err != nil {
			resp.Allowed = false
			resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: err.Error()}
		} else if patch != nil {
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = patch, &pt
		}
	}
	return json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
}

// patch is the JSON patch that gives the pod in raw its sidecar, or nil
// when it needs none (no label, or it has the sidecar already).
func (w *Webhook) patch(raw []byte) ([]byte, error) {
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return nil, fmt.Errorf("admission webhook: the object is not a pod: %v", err)
	}
	if _, ok := pod.Labels[LabelAgent]; !ok {
		return nil, nil
	}
	mutated, err := w.Mutate(&pod)
	if err != nil {
		return nil, err
	}
	// Both sides marshalled alike, so the patch holds only what Mutate
	// changed.
	before, err := json.Marshal(&pod)
	if err != nil {
		return nil, err
	}
	after, err := json.Marshal(mutated)
	if err != nil {
		return nil, err
	}
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil || len(ops) == 0 {
		return nil, err
	}
	return json.Marshal(ops)
}

// Mutate returns a copy of pod with the sidecar, for the agent its label
// names. A pod without the label comes back unchanged.
func (w *Webhook) Mutate(pod *corev1.Pod) (*corev1.Pod, error) {
	agent, ok := pod.Labels[LabelAgent]
	out := pod.DeepCopy()
	if !ok {
		return out, nil
	}
	// Kubernetes allows a label value less than an agent name allows.
	if !passport.ValidAgent(agent) {
		return nil, fmt.Errorf("admission webhook: label %s=%q: want an agent's name", LabelAgent, agent)
	}
	for _, c := range out.Spec.Containers {
		if c.Name == InitName || c.Name == SidecarName {
			return nil, fmt.Errorf("admission webhook: the pod has a container named %q, the name of the STACK sidecar's", c.Name)
		}
	}
	spec := &out.Spec
	spec.InitContainers = upsertFront(spec.InitContainers, []corev1.Container{w.initContainer(), w.sidecar(agent)},
		func(c corev1.Container) string { return c.Name })
	spec.Volumes = upsertFront(spec.Volumes, w.volumes(), func(v corev1.Volume) string { return v.Name })
	proxy := fmt.Sprintf("http://127.0.0.1:%d", w.opts.ProxyPort)
	for i := range spec.Containers {
		c := &spec.Containers[i]
		var env []corev1.EnvVar
		for _, e := range []struct {
			name, value string
			force       bool
		}{
			{"HTTPS_PROXY", proxy, true},
			{"HTTP_PROXY", proxy, true},
			{"NO_PROXY", "localhost,127.0.0.1,::1", false},
			{"SSL_CERT_FILE", caDir + "/ca.pem", false},
			{"REQUESTS_CA_BUNDLE", caDir + "/ca.pem", false},
			{"NODE_EXTRA_CA_CERTS", caDir + "/ca.pem", false},
			{"CURL_CA_BUNDLE", caDir + "/ca.pem", false},
		} {
			if e.force || !slices.ContainsFunc(c.Env, func(v corev1.EnvVar) bool { return v.Name == e.name }) {
				env = append(env, corev1.EnvVar{Name: e.name, Value: e.value})
			}
		}
		c.Env = upsertFront(c.Env, env, func(v corev1.EnvVar) string { return v.Name })
		// The lower-case spellings some clients read first must not
		// point elsewhere.
		c.Env = slices.DeleteFunc(c.Env, func(v corev1.EnvVar) bool { return v.Name == "https_proxy" || v.Name == "http_proxy" })
		c.VolumeMounts = upsertFront(c.VolumeMounts, []corev1.VolumeMount{{Name: caVolume, MountPath: caDir, ReadOnly: true}},
			func(m corev1.VolumeMount) string { return m.Name })
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationInjected] = agent
	return out, nil
}

// upsertFront puts want ahead of the rest of have, replacing the items of
// have with the same key: the result does not depend on whether want was
// there already.
func upsertFront[T any](have, want []T, key func(T) string) []T {
	keys := make(map[string]bool, len(want))
	for _, x := range want {
		keys[key(x)] = true
	}
	out := append([]T(nil), want...)
	for _, x := range have {
		if !keys[key(x)] {
			out = append(out, x)
		}
	}
	return out
}

func restricted() *corev1.SecurityContext {
	no, yes := false, true
	return &corev1.SecurityContext{
		RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// mounts are what both containers mount: the data directory with the
// interception CA in it, the configuration, extra, and a /tmp.
func mounts(extra ...corev1.VolumeMount) []corev1.VolumeMount {
	ms := []corev1.VolumeMount{
		{Name: dataVolume, MountPath: dataDir},
		{Name: sidecarVolume, MountPath: dataDir + "/ca.pem", SubPath: "ca.pem", ReadOnly: true},
		{Name: sidecarVolume, MountPath: dataDir + "/ca-key.json", SubPath: "ca-key.json", ReadOnly: true},
		{Name: configVolume, MountPath: "/etc/stack", ReadOnly: true},
	}
	return append(append(ms, extra...), corev1.VolumeMount{Name: tmpVolume, MountPath: "/tmp"})
}

func (w *Webhook) initContainer() corev1.Container {
	return corev1.Container{
		Name: InitName, Image: w.opts.Image, ImagePullPolicy: corev1.PullPolicy(w.opts.PullPolicy),
		Args:            []string{"--config=/etc/stack/stack.yaml", "init"},
		Env:             []corev1.EnvVar{{Name: "STACK_HOME", Value: dataDir}},
		VolumeMounts:    mounts(),
		SecurityContext: restricted(),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
	}
}

func (w *Webhook) sidecar(agent string) corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("admin")}},
			PeriodSeconds: period, FailureThreshold: failures,
		}
	}
	return corev1.Container{
		Name: SidecarName, Image: w.opts.Image, ImagePullPolicy: corev1.PullPolicy(w.opts.PullPolicy),
		RestartPolicy: &always,
		Args: []string{
			"--config=/etc/stack/stack.yaml", "proxy",
			"--control=" + w.opts.ControlURL,
			"--control-ca=/etc/stack-control-ca/ca.pem",
			"--oidc-token-file=" + tokenDir + "/token",
		},
		Env: []corev1.EnvVar{
			{Name: "STACK_HOME", Value: dataDir},
			{Name: "STACK_CONTROL_AGENT", Value: agent},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		},
		Ports: []corev1.ContainerPort{
			{Name: "proxy", ContainerPort: w.opts.ProxyPort},
			{Name: "admin", ContainerPort: w.opts.AdminPort},
		},
		// The proxy listens once the sidecar has joined, which it keeps
		// trying for two minutes.
		StartupProbe:   probe("/readyz", 2, 60),
		ReadinessProbe: probe("/readyz", 5, 0),
		LivenessProbe:  probe("/healthz", 10, 3),
		VolumeMounts: mounts(
			corev1.VolumeMount{Name: controlCA, MountPath: "/etc/stack-control-ca", ReadOnly: true},
			corev1.VolumeMount{Name: tokenVolume, MountPath: tokenDir, ReadOnly: true}),
		SecurityContext: restricted(),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
	}
}

func (w *Webhook) volumes() []corev1.Volume {
	secretMode := int32(0o440)
	expiry := w.opts.TokenExpiration
	return []corev1.Volume{
		{Name: dataVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: tmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: configVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: configVolume}}}},
		{Name: sidecarVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: sidecarVolume, DefaultMode: &secretMode}}},
		{Name: controlCA, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: controlCA}}}},
		// The pod's token for the audience stack, which the API server
		// refuses: good for joining the control plane and nothing else.
		{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
			ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: w.opts.Audience, ExpirationSeconds: &expiry, Path: "token"},
		}}}}},
		{Name: caVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: caVolume}}}},
	}
}
