package mint

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// mustNotLeak fails when err's message holds any of secrets.
func mustNotLeak(tb testing.TB, err error, secrets ...string) {
	tb.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			tb.Fatalf("error %q holds a secret", err)
		}
	}
}
