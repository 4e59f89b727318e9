package admission_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stackctl/stack/control/admission"
)

const controlURL = "https://stack-control.stack-system.svc:9443"

func newWebhook(t *testing.T) *admission.Webhook {
	t.Helper()
	w, err := admission.New(admission.Options{Image: "stack:dev", ControlURL: controlURL})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// agentPod is an agent's pod as its owner writes it, with an init
// container, a volume and environment of its own.
func agentPod(labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "billing-agent-7d9f", Namespace: "billing", Labels: labels},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "registry.example.com/migrate:1"}},
			Containers: []corev1.Container{
				{
					Name: "agent", Image: "registry.example.com/billing-agent:1.0",
					Env: []corev1.EnvVar{
						{Name: "STRIPE_API_KEY", Value: "stk_ph_stripe"},
						{Name: "HTTPS_PROXY", Value: "http://elsewhere:3128"},
						{Name: "https_proxy", Value: "http://elsewhere:3128"},
						{Name: "SSL_CERT_FILE", Value: "/etc/my-bundle.pem"},
					},
					VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}},
				},
				{Name: "helper", Image: "registry.example.com/helper:1"},
			},
			Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// reviewOf is the AdmissionReview v1 the API server sends for a pod's
// creation.
func reviewOf(t *testing.T, raw []byte) []byte {
	t.Helper()
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("3f1c2a4e-0000-4000-8000-000000000001"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "billing", Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// admit posts the review of raw to the webhook over HTTP and returns the
// pod as the API server would store it (the JSON patch applied) and the
// response.
func admit(t *testing.T, srv *httptest.Server, raw []byte) ([]byte, *admissionv1.AdmissionResponse) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+admission.Path, "application/json", bytes.NewReader(reviewOf(t, raw)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", resp.Status, body)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		t.Fatal(err)
	}
	r := review.Response
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" || r == nil || r.UID != "3f1c2a4e-0000-4000-8000-000000000001" {
		t.Fatalf("not an answer to the review: %s", body)
	}
	if len(r.Patch) == 0 {
		return raw, r
	}
	if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v", r.PatchType)
	}
	p, err := jsonpatch.DecodePatch(r.Patch)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("applying %s: %v", r.Patch, err)
	}
	return out, r
}

func serve(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("POST "+admission.Path, newWebhook(t))
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func names[T any](xs []T, name func(T) string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, name(x))
	}
	return out
}

func envOf(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func TestLabelledPodGetsTheSidecar(t *testing.T) {
	srv := serve(t)
	raw, _ := json.Marshal(agentPod(map[string]string{admission.LabelAgent: "billing-bot", "app": "billing"}))
	patched, resp := admit(t, srv, raw)
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("response %+v", resp)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(patched, &pod); err != nil {
		t.Fatal(err)
	}
	spec := pod.Spec
	containerName := func(c corev1.Container) string { return c.Name }
	if got := names(spec.InitContainers, containerName); !slices.Equal(got, []string{admission.InitName, admission.SidecarName, "migrate"}) {
		t.Errorf("init containers %v: want the sidecar's two first, then the pod's own", got)
	}
	if got := names(spec.Containers, containerName); !slices.Equal(got, []string{"agent", "helper"}) {
		t.Errorf("containers %v: the pod's own, unchanged", got)
	}
	volumeName := func(v corev1.Volume) string { return v.Name }
	if got := names(spec.Volumes, volumeName); !slices.Equal(got, []string{"stack-data", "stack-tmp", "stack-config", "stack-sidecar", "stack-control-ca", "stack-token", "stack-ca", "work"}) {
		t.Errorf("volumes %v", got)
	}
	for _, v := range spec.Volumes {
		if v.Name == "stack-token" {
			p := v.Projected.Sources[0].ServiceAccountToken
			if p.Audience != "stack" || *p.ExpirationSeconds != 3600 || p.Path != "token" {
				t.Errorf("token projection %+v", p)
			}
		}
	}

	sc := spec.InitContainers[1]
	if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the sidecar is not a native sidecar (restartPolicy: Always)")
	}
	if !slices.Contains(sc.Args, "--control="+controlURL) || !slices.Contains(sc.Args, "--oidc-token-file=/var/run/secrets/stack/token") {
		t.Errorf("sidecar args %q", sc.Args)
	}
	if envOf(sc)["STACK_CONTROL_AGENT"] != "billing-bot" {
		t.Errorf("sidecar env %v: want the agent the label names", envOf(sc))
	}
	if sc.StartupProbe == nil || sc.ReadinessProbe == nil || sc.LivenessProbe == nil || sc.StartupProbe.HTTPGet.Path != "/readyz" || sc.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("sidecar probes: startup %v, readiness %v, liveness %v", sc.StartupProbe, sc.ReadinessProbe, sc.LivenessProbe)
	}
	for _, c := range spec.InitContainers[:2] {
		s := c.SecurityContext
		if s == nil || !*s.RunAsNonRoot || !*s.ReadOnlyRootFilesystem || *s.AllowPrivilegeEscalation ||
			!slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) || s.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: security context %+v is not restricted", c.Name, s)
		}
	}
	// The pod's own init container is untouched.
	if m := spec.InitContainers[2]; len(m.Env) != 0 || len(m.VolumeMounts) != 0 {
		t.Errorf("the pod's init container was changed: %+v", m)
	}

	for _, c := range spec.Containers {
		env := envOf(c)
		for k, want := range map[string]string{
			"HTTPS_PROXY": "http://127.0.0.1:8080", "HTTP_PROXY": "http://127.0.0.1:8080", "NO_PROXY": "localhost,127.0.0.1,::1",
			"REQUESTS_CA_BUNDLE": "/etc/stack-ca/ca.pem", "NODE_EXTRA_CA_CERTS": "/etc/stack-ca/ca.pem", "CURL_CA_BUNDLE": "/etc/stack-ca/ca.pem",
		} {
			if env[k] != want {
				t.Errorf("%s: %s=%q, want %q", c.Name, k, env[k], want)
			}
		}
		if _, ok := env["https_proxy"]; ok {
			t.Errorf("%s: https_proxy still points elsewhere", c.Name)
		}
		if m := c.VolumeMounts[0]; m.Name != "stack-ca" || m.MountPath != "/etc/stack-ca" || !m.ReadOnly {
			t.Errorf("%s: mounts %+v", c.Name, c.VolumeMounts)
		}
	}
	agent := envOf(spec.Containers[0])
	if agent["SSL_CERT_FILE"] != "/etc/my-bundle.pem" || agent["STRIPE_API_KEY"] != "stk_ph_stripe" {
		t.Errorf("the agent's own settings were not kept: %v", agent)
	}
	if envOf(spec.Containers[1])["SSL_CERT_FILE"] != "/etc/stack-ca/ca.pem" {
		t.Error("a container without a CA setting did not get the sidecar's")
	}
	if pod.Annotations[admission.AnnotationInjected] != "billing-bot" {
		t.Errorf("annotations %v", pod.Annotations)
	}

	// The API server may call again (reinvocationPolicy: IfNeeded): the
	// second pass changes nothing.
	again, resp := admit(t, srv, patched)
	if len(resp.Patch) != 0 || !bytes.Equal(again, patched) || !resp.Allowed {
		t.Errorf("a second pass patched %s", resp.Patch)
	}
}

func TestPodsLeftAlone(t *testing.T) {
	srv := serve(t)
	raw, _ := json.Marshal(agentPod(map[string]string{"app": "billing"}))
	if out, resp := admit(t, srv, raw); !resp.Allowed || len(resp.Patch) != 0 || !bytes.Equal(out, raw) {
		t.Errorf("an unlabelled pod was changed: %+v", resp)
	}
	// Not a pod at all.
	b := reviewOf(t, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`))
	b = bytes.Replace(b, []byte(`"kind":"Pod"`), []byte(`"kind":"ConfigMap"`), 1)
	out, err := newWebhook(t).Review(b)
	if err != nil || !strings.Contains(string(out), `"allowed":true`) || strings.Contains(string(out), "patch") {
		t.Errorf("a ConfigMap: %s %v", out, err)
	}
}

func TestRefusals(t *testing.T) {
	srv := serve(t)
	post := func(body string) (int, string) {
		resp, err := srv.Client().Post(srv.URL+admission.Path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for name, tc := range map[string]struct {
		body, want string
	}{
		"not JSON":           {`{"apiVersion":`, "not an AdmissionReview"},
		"another kind":       {`{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}`, `kind "Pod"`},
		"v1beta1":            {`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`, "want admission.k8s.io/v1"},
		"no request":         {`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "no request"},
		"request without id": {`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"version":"v1","kind":"Pod"}}}`, "without a uid"},
	} {
		if st, body := post(tc.body); st != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s", name, st, body)
		}
	}
	// A review of a pod the webhook cannot give a sidecar is answered,
	// and the pod denied with why (the API server shows the message).
	for name, tc := range map[string]struct {
		raw  []byte
		want string
	}{
		"not a pod": {[]byte(`{"spec":{"containers":"many"}}`), "not a pod"},
		"bad agent": {mustJSON(agentPod(map[string]string{admission.LabelAgent: "Billing Bot"})), "want an agent's name"},
		"a clash":   {mustJSON(clash()), `named "stack"`},
	} {
		_, resp := admit(t, srv, tc.raw)
		if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, tc.want) || len(resp.Patch) != 0 {
			t.Errorf("%s: %+v", name, resp)
		}
	}
	resp, err := srv.Client().Get(srv.URL + admission.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %s", resp.Status)
	}
	if _, err := admission.New(admission.Options{Image: "stack:dev"}); err == nil {
		t.Error("a webhook without the control plane's URL")
	}
	if _, err := admission.New(admission.Options{Image: "stack:dev", ControlURL: controlURL, PullPolicy: "Sometimes"}); err == nil {
		t.Error("a bad pull policy")
	}
}

func clash() *corev1.Pod {
	p := agentPod(map[string]string{admission.LabelAgent: "billing-bot"})
	p.Spec.Containers[1].Name = admission.SidecarName
	return p
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
