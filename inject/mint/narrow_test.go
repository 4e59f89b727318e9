package mint

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stackctl/stack/passport"
)

// Only a narrowing the credential cannot honour is ErrNarrow; parameters
// or root material that do not work are ErrInvalid without it. Neither
// reaches an issuer, and a narrowing's refusal names what the grant asked
// for, never what else the credential allows.
func TestNarrowRefusals(t *testing.T) {
	rsaKey := testRSAKey(t, 0)
	saKey := serviceAccountJSON(t, rsaKey, "https://oauth2.googleapis.com/token")
	appKey := pkcs1PEM(rsaKey)
	oauth := encodeParams(OAuth2Params{TokenURL: "https://auth.example/oauth/token", ClientID: "c",
		Scopes: []string{"orders.read", "orders.write", "orders.admin"}})
	gcp, err := Check(KindGCP, encodeParams(GCPParams{Scopes: gcpScopes}), saKey)
	if err != nil {
		t.Fatal(err)
	}
	gh := encodeParams(GitHubParams{AppID: githubAppID, InstallationID: githubInstallation,
		Permissions: map[string]string{"contents": "read", "issues": "write"}, Repositories: []string{"api", "infra"}})
	aws := awsParams(t, AWSParams{RoleARN: testRoleARN, Region: "eu-west-1", AccessKeyID: "AKIAIOSFODNN7EXAMPLE"})
	awsSecret := []byte("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
	s3Get := &passport.Narrowing{Actions: []string{"s3:GetObject"}}

	for _, tc := range []struct {
		name   string
		r      Request
		narrow bool     // ErrNarrow, else ErrInvalid only
		says   string   // in the message
		hides  []string // never in the message
	}{
		{"oauth2: a scope the credential does not allow",
			Request{Kind: KindOAuth2, Params: oauth, Root: []byte(oauthSecret), Narrow: &passport.Narrowing{Scopes: []string{"orders.read", "orders.refund"}}},
			true, `"orders.refund"`, []string{"orders.write", "orders.admin"}},
		{"gcp: a scope the credential does not allow",
			Request{Kind: KindGCP, Params: gcp, Root: saKey, Narrow: &passport.Narrowing{Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}}},
			true, "cloud-platform", []string{"devstorage", "bigquery"}},
		{"github: a level above the credential's",
			Request{Kind: KindGitHub, Params: gh, Root: appKey, Narrow: &passport.Narrowing{Permissions: map[string]string{"contents": "admin"}}},
			true, "permission contents: admin", []string{"contents: read", "issues"}},
		{"github: a permission not held",
			Request{Kind: KindGitHub, Params: gh, Root: appKey, Narrow: &passport.Narrowing{Permissions: map[string]string{"actions": "read"}}},
			true, "permission actions", []string{"contents", "issues"}},
		{"github: a level that does not exist",
			Request{Kind: KindGitHub, Params: gh, Root: appKey, Narrow: &passport.Narrowing{Permissions: map[string]string{"contents": "owner"}}},
			true, `"owner"`, nil},
		{"github: a repository not reached",
			Request{Kind: KindGitHub, Params: gh, Root: appKey, Narrow: &passport.Narrowing{Repositories: []string{"web"}}},
			true, "repository web", []string{"api", "infra"}},
		{"github: a repository with its owner",
			Request{Kind: KindGitHub, Params: gh, Root: appKey, Narrow: &passport.Narrowing{Repositories: []string{"octo/api"}}},
			true, `"octo/api"`, nil},
		{"aws: no narrowing",
			Request{Kind: KindAWS, Params: aws, Root: awsSecret, Agent: "a"},
			true, "narrow.actions", nil},
		{"aws: an empty action",
			Request{Kind: KindAWS, Params: aws, Root: awsSecret, Agent: "a", Narrow: &passport.Narrowing{Actions: []string{"s3:GetObject", ""}}},
			true, "empty action", nil},
		{"aws: a session policy too long",
			Request{Kind: KindAWS, Params: aws, Root: awsSecret, Agent: "a", Narrow: &passport.Narrowing{Actions: []string{"s3:GetObject"},
				Resources: []string{"arn:aws:s3:::" + strings.Repeat("x", 2100)}}},
			true, "at most 2048", nil},

		{"oauth2: an empty client secret",
			Request{Kind: KindOAuth2, Params: oauth, Narrow: &passport.Narrowing{Scopes: []string{"orders.read"}}},
			false, "client secret is empty", nil},
		{"oauth2: parameters that do not check",
			Request{Kind: KindOAuth2, Params: []byte(`{"token_url":"http://auth.example/token","client_id":"c"}`), Root: []byte(oauthSecret)},
			false, "token_url", nil},
		{"gcp: a key swapped under the parameters",
			Request{Kind: KindGCP, Params: encodeParams(GCPParams{Scopes: gcpScopes, ClientEmail: "other@p.iam.gserviceaccount.com"}), Root: saKey},
			false, "the key is for", nil},
		{"github: a private key that does not parse",
			Request{Kind: KindGitHub, Params: gh, Root: []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")},
			false, "private key", nil},
		{"aws: a secret access key too short",
			Request{Kind: KindAWS, Params: aws, Root: []byte("short"), Agent: "a", Narrow: s3Get},
			false, "secret access key", nil},
		{"an unknown kind",
			Request{Kind: "ldap-bind", Params: oauth, Root: []byte(oauthSecret)},
			false, "unknown kind", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noCalls := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
				t.Error("the issuer was called")
				return nil, errors.New("no issuer in this test")
			}}}
			_, err := Mint(context.Background(), Env{HTTPClient: noCalls}, tc.r)
			if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrMint) {
				t.Fatalf("Mint = %v, want ErrInvalid", err)
			}
			if errors.Is(err, ErrNarrow) != tc.narrow {
				t.Fatalf("Mint = %v: ErrNarrow %v, want %v", err, errors.Is(err, ErrNarrow), tc.narrow)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Mint = %v, want it to say %s", err, tc.says)
			}
			for _, h := range tc.hides {
				if strings.Contains(err.Error(), h) {
					t.Errorf("Mint = %v: it tells what else the credential holds (%s)", err, h)
				}
			}
		})
	}
}
