package admission_test

import (
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/stackctl/stack/control/admission"
)

// Whatever the API server (or anyone reaching the listener) sends, Review
// answers a review or an error, never panics, and answers the request it
// was asked: the same uid, and a patch only for a labelled pod.
func FuzzReview(f *testing.F) {
	w, err := admission.New(admission.Options{Image: "stack:dev", ControlURL: "https://stack-control.stack-system.svc:9443"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"object":{"metadata":{"labels":{"stack.run/agent":"bot"}},"spec":{"containers":[{"name":"a","env":[{"name":"HTTPS_PROXY","value":"x"}]}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"object":{"metadata":{"labels":{"stack.run/agent":"bot"}},"spec":{"initContainers":[{"name":"stack"}],"volumes":[{"name":"stack-ca"}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"object":{"metadata":{"labels":{"app":"x"}}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"object":[]}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := w.Review(body)
		if err != nil {
			return
		}
		var in, r admissionv1.AdmissionReview
		if json.Unmarshal(body, &in) != nil || json.Unmarshal(out, &r) != nil || r.Response == nil {
			t.Fatalf("answered %s to %s", out, body)
		}
		if r.Response.UID != in.Request.UID {
			t.Fatalf("answered uid %q to %q", r.Response.UID, in.Request.UID)
		}
		if len(r.Response.Patch) > 0 {
			var pod corev1.Pod
			if json.Unmarshal(in.Request.Object.Raw, &pod) != nil || pod.Labels[admission.LabelAgent] == "" || !r.Response.Allowed {
				t.Fatalf("patched what is not a labelled pod: %s", body)
			}
		}
	})
}
