package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stackctl/stack/control/admission"
)

// webhook.yaml sends labelled pods to the control plane's webhook, as the
// control plane serves it: its Service, port and path, with the failure
// policy its comment promises.
func TestWebhookConfiguration(t *testing.T) {
	m := load(t)
	wc, ok := m.webhooks["stack-sidecar-injector"]
	if !ok || len(wc.Webhooks) != 1 {
		t.Fatal("webhook.yaml: want one MutatingWebhookConfiguration stack-sidecar-injector with one webhook")
	}
	wh := wc.Webhooks[0]
	w, _ := controlPlane(t, m)
	svc := controlService(t, m, w)
	s := wh.ClientConfig.Service
	if s == nil || s.Name != svc.Name || s.Namespace != svc.Namespace || s.Path == nil || *s.Path != admission.Path || s.Port == nil || *s.Port != svc.Spec.Ports[0].Port {
		t.Errorf("clientConfig.service %+v: want %s/%s port %d path %s", s, svc.Namespace, svc.Name, svc.Spec.Ports[0].Port, admission.Path)
	}
	if len(wh.ClientConfig.CABundle) == 0 || wh.ClientConfig.URL != nil {
		t.Error("clientConfig: want the control CA in caBundle, and the Service rather than a URL")
	}
	if wh.FailurePolicy == nil || *wh.FailurePolicy != admissionregistrationv1.Fail || wh.SideEffects == nil || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone ||
		!slices.Equal(wh.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("failurePolicy %v, sideEffects %v, admissionReviewVersions %v: want Fail, None, [v1]", wh.FailurePolicy, wh.SideEffects, wh.AdmissionReviewVersions)
	}
	sel := wh.ObjectSelector
	if sel == nil || len(sel.MatchExpressions) != 1 || sel.MatchExpressions[0].Key != admission.LabelAgent || sel.MatchExpressions[0].Operator != metav1.LabelSelectorOpExists {
		t.Errorf("objectSelector %+v: want the pods with %s only", sel, admission.LabelAgent)
	}
	ns := wh.NamespaceSelector
	if ns == nil || len(ns.MatchExpressions) != 1 || !slices.Contains(ns.MatchExpressions[0].Values, svc.Namespace) || ns.MatchExpressions[0].Operator != metav1.LabelSelectorOpNotIn {
		t.Errorf("namespaceSelector %+v: must leave out the control plane's namespace, %s", ns, svc.Namespace)
	}
	if len(wh.Rules) != 1 || !slices.Equal(wh.Rules[0].Resources, []string{"pods"}) || !slices.Equal(wh.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
		t.Errorf("rules %+v: want pod creation", wh.Rules)
	}

	// The control plane serves the webhook, and its sidecars join the
	// control plane at a name its certificate is valid for.
	cfg := loadConfig(t, m, key{"stack-system", "stack-control-config"})
	hook := cfg.Control.Webhook
	if hook.Image == "" {
		t.Fatal("the control plane's stack.yaml sets no control.webhook.image: it serves no webhook")
	}
	u, err := url.Parse(hook.ControlURL)
	if err != nil || !slices.Contains(cfg.Control.Hosts, u.Hostname()) || u.Port() != "9443" {
		t.Errorf("control.webhook.control_url %q: want a name in control.hosts %v, port 9443", hook.ControlURL, cfg.Control.Hosts)
	}
}

// The webhook, as the control plane's stack.yaml configures it, writes
// deployment.yaml's sidecar exactly: given the Deployment's pod with what
// the webhook adds taken out, an AdmissionReview's patch puts back the
// pod template as written, and a second review changes nothing.
func TestWebhookWritesTheExample(t *testing.T) {
	m := load(t)
	cfg := loadConfig(t, m, key{"stack-system", "stack-control-config"})
	hook, err := admission.New(admission.Options{Image: cfg.Control.Webhook.Image, PullPolicy: cfg.Control.Webhook.PullPolicy, ControlURL: cfg.Control.Webhook.ControlURL})
	if err != nil {
		t.Fatal(err)
	}
	d, ok := m.deployments[key{"billing", "billing-agent"}]
	if !ok {
		t.Fatal("no Deployment billing/billing-agent")
	}
	tmpl := d.Spec.Template
	if tmpl.Labels[admission.LabelAgent] == "" {
		t.Fatalf("the pod template has no %s label", admission.LabelAgent)
	}
	want := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: *tmpl.Spec.DeepCopy()}
	bare := want.DeepCopy()
	s := &bare.Spec
	s.InitContainers = slices.DeleteFunc(s.InitContainers, func(c corev1.Container) bool {
		return c.Name == admission.InitName || c.Name == admission.SidecarName
	})
	s.Volumes = slices.DeleteFunc(s.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, "stack-") })
	for i := range s.Containers {
		c := &s.Containers[i]
		c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool {
			return slices.Contains([]string{"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE"}, e.Name)
		})
		c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool { return v.Name == "stack-ca" })
	}
	if len(s.InitContainers) != 0 || len(s.Volumes) == len(tmpl.Spec.Volumes) {
		t.Fatalf("the template's sidecar was not where the webhook puts it: %d init containers left", len(s.InitContainers))
	}

	review := func(raw []byte) []byte {
		t.Helper()
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Namespace: d.Namespace, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}},
		})
		out, err := hook.Review(body)
		if err != nil {
			t.Fatal(err)
		}
		var r admissionv1.AdmissionReview
		if err := json.Unmarshal(out, &r); err != nil || !r.Response.Allowed {
			t.Fatalf("review: %s %v", out, err)
		}
		if len(r.Response.Patch) == 0 {
			return raw
		}
		p, err := jsonpatch.DecodePatch(r.Response.Patch)
		if err != nil {
			t.Fatal(err)
		}
		patched, err := p.Apply(raw)
		if err != nil {
			t.Fatal(err)
		}
		return patched
	}
	raw, _ := json.Marshal(bare)
	patched := review(raw)
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	if got.Annotations[admission.AnnotationInjected] != tmpl.Labels[admission.LabelAgent] {
		t.Errorf("annotations %v", got.Annotations)
	}
	delete(got.Annotations, admission.AnnotationInjected)
	gotJSON, _ := json.MarshalIndent(got, "", "  ")
	wantJSON, _ := json.MarshalIndent(want, "", "  ")
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("the webhook's pod differs from deployment.yaml's template:\n%s", lineDiff(string(wantJSON), string(gotJSON)))
	}
	if again := review(patched); !bytes.Equal(again, patched) {
		t.Error("a second review changed the pod")
	}
}

// lineDiff shows the lines of got that differ from want, with a line of
// context: enough to find what to change in the manifest or the webhook.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, wl, gl)
			if b.Len() > 4000 {
				break
			}
		}
	}
	return b.String()
}
