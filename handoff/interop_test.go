package handoff_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/internal/testenv"
)

const interopDir = "../testdata/interop"

// jose implementations other than ours, run as programs.
var interopTools = []struct {
	name  string
	argv  []string
	ready func() string
}{
	{"python-joserfc", []string{"python3", filepath.Join(interopDir, "handoff.py")}, func() string {
		if exec.Command("python3", "-c", "import joserfc").Run() != nil {
			return "python3 with joserfc not installed"
		}
		return ""
	}},
	{"node-jose", []string{"node", filepath.Join(interopDir, "handoff.mjs")}, func() string {
		if _, err := exec.LookPath("node"); err != nil {
			return "node not installed"
		}
		if _, err := os.Stat(filepath.Join(interopDir, "node_modules", "jose", "package.json")); err != nil {
			return "jose not installed (npm install --prefix testdata/interop)"
		}
		return ""
	}},
}

func writeJWK(t *testing.T, key any) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.jwk")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runTool(t *testing.T, argv []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &toolError{err, stderr.String()}
	}
	return strings.TrimSpace(string(out)), nil
}

type toolError struct {
	err    error
	stderr string
}

func (e *toolError) Error() string { return e.err.Error() + ": " + e.stderr }

// TestInterop: a handoff STACK seals is opened by another JOSE library
// given the recipient's key, and one that library seals to STACK's
// recipient key, signed with a key a passport confirms, is accepted: the
// format is the standard one.
func TestInterop(t *testing.T) {
	w := newWorld(t)
	sender, recipient := mustKeys(t), mustKeys(t)
	pp := w.passportFor("scraper", sender, time.Hour)
	payload := json.RawMessage(`{"findings":["a","b"],"n":2}`)
	for _, tool := range interopTools {
		t.Run(tool.name, func(t *testing.T) {
			if why := tool.ready(); why != "" {
				testenv.Missing(t, why)
			}
			// Ours sealed, theirs opens.
			tok, id, err := handoff.Seal(handoff.SealRequest{From: "scraper", To: "drafter", Schema: "findings/v1", Passport: pp, Payload: payload, TTL: time.Hour}, sender, recipient.Public().Enc)
			if err != nil {
				t.Fatal(err)
			}
			out, err := runTool(t, tool.argv, "open", writeJWK(t, recipient.Enc), tok)
			if err != nil {
				t.Fatalf("%s could not open STACK's handoff: %v", tool.name, err)
			}
			var res struct {
				Claims handoff.Claims `json:"claims"`
				Typ    string         `json:"typ"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%s printed %q: %v", tool.name, out, err)
			}
			if res.Claims.ID != id || res.Claims.From != "scraper" || res.Claims.Passport != pp || res.Typ != handoff.TokenType {
				t.Fatalf("%s opened %+v", tool.name, res)
			}
			// The tool prints the claims it decoded: compare values, not bytes.
			var gotPayload, wantPayload any
			if json.Unmarshal(res.Claims.Payload, &gotPayload) != nil || json.Unmarshal(payload, &wantPayload) != nil || !reflect.DeepEqual(gotPayload, wantPayload) {
				t.Fatalf("payload %s, want %s", res.Claims.Payload, payload)
			}
			// Another recipient's key: theirs refuses too.
			if _, err := runTool(t, tool.argv, "open", writeJWK(t, sender.Enc), tok); err == nil {
				t.Fatalf("%s opened a handoff with the wrong key", tool.name)
			}

			// Theirs sealed, ours opens.
			now := time.Now()
			claims, _ := json.Marshal(handoff.Claims{ID: "ext-1", From: "scraper", To: "drafter", Schema: "findings/v1",
				IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix(), Passport: pp, Payload: payload})
			cf := filepath.Join(t.TempDir(), "claims.json")
			os.WriteFile(cf, claims, 0o600)
			pub := recipient.Public().Enc
			pubFile := filepath.Join(t.TempDir(), "recipient.jwk")
			b, _ := json.Marshal(pub)
			os.WriteFile(pubFile, b, 0o600)
			ext, err := runTool(t, tool.argv, "seal", pubFile, writeJWK(t, sender.Sign), cf)
			if err != nil {
				t.Fatalf("%s could not seal: %v", tool.name, err)
			}
			got, err := handoff.Open(ext, handoff.OpenOptions{Recipient: "drafter", Keys: recipient, CheckPassport: w.check})
			if err != nil {
				t.Fatalf("STACK refused %s's handoff: %v", tool.name, err)
			}
			if got.ID != "ext-1" || got.From != "scraper" {
				t.Fatalf("opened %+v", got.Claims)
			}
			// Sealed by that library with a key no passport confirms: refused.
			stranger := mustKeys(t)
			ext, err = runTool(t, tool.argv, "seal", pubFile, writeJWK(t, stranger.Sign), cf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := handoff.Open(ext, handoff.OpenOptions{Recipient: "drafter", Keys: recipient, CheckPassport: w.check}); err == nil {
				t.Fatalf("STACK accepted a handoff signed with a key the sender's passport does not confirm")
			}
		})
	}
}
