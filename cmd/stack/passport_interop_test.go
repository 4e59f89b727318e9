package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/testenv"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
	"github.com/stackctl/stack/vault/kms"
)

const interopDir = "../../testdata/interop"

func base64Decode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// interopVerifier is an independent JOSE implementation run as a program.
type interopVerifier struct {
	name string
	argv []string // program and script; JWKS file and token are appended
	// ready reports why the verifier cannot run here, or "" when it can.
	ready func() string
}

func interopVerifiers() []interopVerifier {
	return []interopVerifier{
		{
			name: "python-joserfc",
			argv: []string{"python3", filepath.Join(interopDir, "verify.py")},
			ready: func() string {
				if _, err := exec.LookPath("python3"); err != nil {
					return "python3 not installed"
				}
				if err := exec.Command("python3", "-c", "import joserfc").Run(); err != nil {
					return "python package joserfc not installed"
				}
				return ""
			},
		},
		{
			name: "node-jose",
			argv: []string{"node", filepath.Join(interopDir, "verify.mjs")},
			ready: func() string {
				if _, err := exec.LookPath("node"); err != nil {
					return "node not installed"
				}
				if _, err := os.Stat(filepath.Join(interopDir, "node_modules", "jose", "package.json")); err != nil {
					return "jose not installed (npm install --prefix testdata/interop)"
				}
				return ""
			},
		},
	}
}

// TestPassportInterop checks that passports from `stack passport issue`
// verify with independent JOSE libraries given only `stack passport jwks`,
// and that those libraries, like ours, reject a flipped signature byte, an
// expired passport and an alg:none token.
func TestPassportInterop(t *testing.T) {
	home := initHome(t)
	good := issueToken(t, home, "--agent", "interop-bot", "--role", "billing-reporter")
	code, jwks, errs := runStack(t, home, "", "passport", "jwks")
	if code != 0 {
		t.Fatalf("passport jwks: exit %d: %s", code, errs)
	}
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, []byte(jwks), 0o600); err != nil {
		t.Fatal(err)
	}

	tokens := []struct {
		name   string
		token  string
		valid  bool
		reason string // what `stack passport verify` prints when it rejects
	}{
		{"good", good, true, ""},
		{"flipped signature byte", flipSignatureChar(good), false, reason.PassportInvalid},
		{"expired", expiredToken(t, home), false, reason.PassportExpired},
		{"alg none", algNone(t, good), false, reason.PassportInvalid},
	}

	// Ours first: the same verdicts through `stack passport verify`.
	for _, tc := range tokens {
		code, out, errs := runStack(t, home, "", "passport", "verify", tc.token)
		if (code == 0) != tc.valid || (!tc.valid && strings.TrimSpace(out) != tc.reason) {
			t.Errorf("stack passport verify, %s: exit %d (%s %s)", tc.name, code, out, errs)
		}
	}

	for _, v := range interopVerifiers() {
		t.Run(v.name, func(t *testing.T) {
			if why := v.ready(); why != "" {
				testenv.Missing(t, v.name+" cannot run: "+why)
			}
			for _, tc := range tokens {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				cmd := exec.CommandContext(ctx, v.argv[0], append(v.argv[1:], jwksFile, tc.token)...)
				var stdout, stderr strings.Builder
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				cancel()
				var exit *exec.ExitError
				switch {
				case tc.valid && err != nil:
					t.Errorf("%s rejected the %s token: %v\n%s", v.name, tc.name, err, stderr.String())
				case tc.valid:
					var res struct {
						Claims map[string]any `json:"claims"`
					}
					if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil || res.Claims["sub"] != "interop-bot" {
						t.Errorf("%s output for the good token: %v %q", v.name, err, stdout.String())
					}
				case err == nil:
					t.Errorf("%s accepted the %s token", v.name, tc.name)
				case !errors.As(err, &exit) || exit.ExitCode() != 1:
					t.Errorf("%s failed to run on the %s token: %v\n%s", v.name, tc.name, err, stderr.String())
				default:
					t.Logf("%s rejects the %s token: %s", v.name, tc.name, strings.TrimSpace(stderr.String()))
				}
			}
		})
	}
}

// flipSignatureChar changes one character in the middle of the signature
// (not the last one, whose low bits are padding some decoders ignore).
func flipSignatureChar(token string) string {
	i := strings.LastIndexByte(token, '.') + 20
	b := []byte(token)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// algNone keeps the good token's claims under an alg:none header and no
// signature.
func algNone(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64Decode(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	h["alg"] = "none"
	hb, _ := json.Marshal(h)
	return base64.RawURLEncoding.EncodeToString(hb) + "." + parts[1] + "."
}

// expiredToken issues, with the home's real issuer key and a clock two
// hours back, a passport that expired long ago.
func expiredToken(t *testing.T, home string) string {
	t.Helper()
	return homeKeyToken(t, home, time.Now().Add(-2*time.Hour), 5*time.Minute)
}

// homeKeyToken issues, with the home's real issuer key, a passport issued
// at iat that lives ttl, whatever the home's passport.max_ttl.
func homeKeyToken(t *testing.T, home string, iat time.Time, ttl time.Duration) string {
	t.Helper()
	ctx := context.Background()
	k, err := kms.Open(ctx, "local://kms.key", kms.Options{BaseDir: home})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	keys, err := passport.LoadKeySet(ctx, filepath.Join(home, "issuer-keys.json"), k)
	if err != nil {
		t.Fatal(err)
	}
	is := &passport.Issuer{Keys: keys, MaxTTL: ttl, Now: func() time.Time { return iat }}
	tok, _, err := is.Issue(ctx, passport.IssueRequest{
		Agent: "interop-bot",
		Scope: passport.ReferenceRoles()["billing-reporter"].Scope,
		TTL:   ttl,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
