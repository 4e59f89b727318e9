package mint

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// setJSON is obj with key set to v (deleted when v is nil), as JSON.
func setJSON(tb testing.TB, obj []byte, key string, v any) []byte {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(obj, &m); err != nil {
		tb.Fatal(err)
	}
	if v == nil {
		delete(m, key)
	} else {
		m[key] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestCheckRefusesMalformedCredentials(t *testing.T) {
	rsaKey := testRSAKey(t, 0)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saKey := serviceAccountJSON(t, rsaKey, "https://oauth2.googleapis.com/token")
	appKey := pkcs1PEM(rsaKey)
	oauthOK := `{"token_url":"https://auth.example/oauth/token","client_id":"c","scopes":["read"]}`
	gcpOK := `{"scopes":["https://www.googleapis.com/auth/devstorage.read_only"]}`
	ghOK := `{"app_id":"12345","installation_id":678}`

	for _, tc := range []struct {
		name, kind string
		params     string
		root       []byte
		want       string // in the error: the field at fault
	}{
		// oauth2-client-credentials
		{"oauth2: plain http", KindOAuth2, `{"token_url":"http://auth.example/token","client_id":"c"}`, []byte(oauthSecret), "token_url"},
		{"oauth2: no token_url", KindOAuth2, `{"client_id":"c"}`, []byte(oauthSecret), "token_url: required"},
		{"oauth2: not a URL", KindOAuth2, `{"token_url":"https://auth example/%zz","client_id":"c"}`, []byte(oauthSecret), "token_url"},
		{"oauth2: user info in the URL", KindOAuth2, `{"token_url":"https://c:pw@auth.example/token","client_id":"c"}`, []byte(oauthSecret), "token_url"},
		{"oauth2: no client_id", KindOAuth2, `{"token_url":"https://auth.example/token"}`, []byte(oauthSecret), "client_id: required"},
		{"oauth2: a scope with a space", KindOAuth2, `{"token_url":"https://auth.example/token","client_id":"c","scopes":["read write"]}`, []byte(oauthSecret), "scopes[0]"},
		{"oauth2: an empty scope", KindOAuth2, `{"token_url":"https://auth.example/token","client_id":"c","scopes":[""]}`, []byte(oauthSecret), "scopes[0]"},
		{"oauth2: an auth style", KindOAuth2, `{"token_url":"https://auth.example/token","client_id":"c","auth_style":"basic"}`, []byte(oauthSecret), "auth_style"},
		{"oauth2: a control character in audience", KindOAuth2, `{"token_url":"https://auth.example/token","client_id":"c","audience":"a\nb"}`, []byte(oauthSecret), "audience"},
		{"oauth2: an unknown field", KindOAuth2, `{"token_url":"https://auth.example/token","client_id":"c","client_secret":"x"}`, []byte(oauthSecret), `unknown field "client_secret"`},
		{"oauth2: not JSON", KindOAuth2, `token_url=https://auth.example`, []byte(oauthSecret), "parameters"},
		{"oauth2: an empty secret", KindOAuth2, oauthOK, nil, "client secret is empty"},
		{"oauth2: a secret with a newline", KindOAuth2, oauthOK, []byte(oauthSecret + "\n"), "client secret holds control characters"},

		// gcp-service-account
		{"gcp: no scopes", KindGCP, `{}`, saKey, "scopes: required"},
		{"gcp: a bad scope", KindGCP, `{"scopes":["a b"]}`, saKey, "scopes[0]"},
		{"gcp: an unknown field", KindGCP, `{"scopes":["s"],"project":"p"}`, saKey, `unknown field "project"`},
		{"gcp: plain http token_url", KindGCP, `{"scopes":["s"],"token_url":"http://oauth2.googleapis.com/token"}`, saKey, "token_url"},
		{"gcp: the key not JSON", KindGCP, gcpOK, pkcs8PEM(t, rsaKey), "not a service-account key"},
		{"gcp: the key of another type", KindGCP, gcpOK, setJSON(t, saKey, "type", "authorized_user"), `type "authorized_user"`},
		{"gcp: no private key", KindGCP, gcpOK, setJSON(t, saKey, "private_key", nil), "private_key: required"},
		{"gcp: a private key that does not parse", KindGCP, gcpOK,
			setJSON(t, saKey, "private_key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "private_key: the PKCS#8 key does not parse"},
		{"gcp: a private key not PEM", KindGCP, gcpOK, setJSON(t, saKey, "private_key", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), "private_key: not a PEM"},
		{"gcp: an EC private key", KindGCP, gcpOK, setJSON(t, saKey, "private_key", string(pkcs8PEM(t, ecKey))), "want an RSA key"},
		{"gcp: no client_email", KindGCP, gcpOK, setJSON(t, saKey, "client_email", nil), "client_email: required"},
		{"gcp: no private_key_id", KindGCP, gcpOK, setJSON(t, saKey, "private_key_id", nil), "private_key_id: required"},
		{"gcp: a token_uri not https", KindGCP, gcpOK, setJSON(t, saKey, "token_uri", "http://oauth2.googleapis.com/token"), "token_uri"},
		{"gcp: another account's key", KindGCP, `{"scopes":["s"],"client_email":"other@p.iam.gserviceaccount.com"}`, saKey, "client_email"},
		{"gcp: another token_url than the key's", KindGCP, `{"scopes":["s"],"token_url":"https://elsewhere.example/token"}`, saKey, "token_url"},

		// github-app
		{"github: no app_id", KindGitHub, `{"installation_id":678}`, appKey, "app_id: required"},
		{"github: an app_id with a slash", KindGitHub, `{"app_id":"1/2","installation_id":678}`, appKey, "app_id"},
		{"github: no installation_id", KindGitHub, `{"app_id":"12345"}`, appKey, "installation_id: required"},
		{"github: a negative installation_id", KindGitHub, `{"app_id":"12345","installation_id":-1}`, appKey, "installation_id"},
		{"github: installation_id a string", KindGitHub, `{"app_id":"12345","installation_id":"678"}`, appKey, "installation_id"},
		{"github: plain http api_url", KindGitHub, `{"app_id":"12345","installation_id":678,"api_url":"http://ghe.example/api/v3"}`, appKey, "api_url"},
		{"github: an api_url with a query", KindGitHub, `{"app_id":"12345","installation_id":678,"api_url":"https://ghe.example/api/v3?x=1"}`, appKey, "api_url"},
		{"github: a permission level", KindGitHub, `{"app_id":"12345","installation_id":678,"permissions":{"contents":"owner"}}`, appKey, "permissions contents"},
		{"github: a permission name", KindGitHub, `{"app_id":"12345","installation_id":678,"permissions":{"Contents":"read"}}`, appKey, `permissions "Contents"`},
		{"github: a repository with its owner", KindGitHub, `{"app_id":"12345","installation_id":678,"repositories":["octo-org/api"]}`, appKey, "repositories[0]"},
		{"github: an unknown field", KindGitHub, `{"app_id":"12345","installation_id":678,"private_key":"x"}`, appKey, `unknown field "private_key"`},
		{"github: no key", KindGitHub, ghOK, nil, "not a PEM"},
		{"github: a key that does not parse", KindGitHub, ghOK, []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), "PKCS#1 RSA key does not parse"},
		{"github: an EC key", KindGitHub, ghOK, pkcs8PEM(t, ecKey), "want an RSA key"},
		{"github: a public key", KindGitHub, ghOK, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), `PEM "PUBLIC KEY" block`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params, err := Check(tc.kind, json.RawMessage(tc.params), tc.root)
			if !errors.Is(err, ErrInvalid) || params != nil {
				t.Fatalf("Check = %s, %v; want ErrInvalid", params, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v; want it to name %s", err, tc.want)
			}
			mustNotLeak(t, err, string(tc.root), oauthSecret, string(appKey), string(pkcs8PEM(t, rsaKey)))
		})
	}
}

func TestCheckReportsEveryProblem(t *testing.T) {
	_, err := Check(KindGitHub, json.RawMessage(`{"api_url":"http://x","permissions":{"contents":"all"}}`), pkcs1PEM(testRSAKey(t, 0)))
	for _, field := range []string{"app_id", "installation_id", "api_url", "permissions contents"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Check: %v; want it to name %s", err, field)
		}
	}
}

func TestCheckNormalizes(t *testing.T) {
	rsaKey := testRSAKey(t, 0)
	for _, tc := range []struct {
		name, kind, params string
		root               []byte
		want               string
	}{
		{"oauth2", KindOAuth2,
			` { "client_id": "c", "token_url": "https://Auth.example/oauth/token", "scopes": ["read", "write", "read"] }`, []byte(oauthSecret),
			`{"token_url":"https://Auth.example/oauth/token","client_id":"c","scopes":["read","write"]}`},
		{"gcp fills in the account and token URL", KindGCP,
			`{"scopes":["s"]}`, serviceAccountJSON(t, rsaKey, "https://oauth2.googleapis.com/token"),
			`{"scopes":["s"],"client_email":"` + gcpEmail + `","token_url":"https://oauth2.googleapis.com/token"}`},
		{"gcp: a key without token_uri is Google's", KindGCP,
			`{"scopes":["s"],"client_email":"` + gcpEmail + `"}`, setJSON(t, serviceAccountJSON(t, rsaKey, ""), "token_uri", nil),
			`{"scopes":["s"],"client_email":"` + gcpEmail + `","token_url":"https://oauth2.googleapis.com/token"}`},
		{"github: the default API", KindGitHub,
			`{"app_id":"12345","installation_id":678,"permissions":{}}`, pkcs1PEM(rsaKey),
			`{"app_id":"12345","installation_id":678,"api_url":"https://api.github.com"}`},
		{"github: an Enterprise API", KindGitHub,
			`{"app_id":"Iv1.0123abcd","installation_id":678,"api_url":"https://ghe.example/api/v3/","repositories":["api","api"],"permissions":{"issues":"write"}}`, pkcs8PEM(t, rsaKey),
			`{"app_id":"Iv1.0123abcd","installation_id":678,"api_url":"https://ghe.example/api/v3","permissions":{"issues":"write"},"repositories":["api"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Check(tc.kind, json.RawMessage(tc.params), tc.root)
			if err != nil || string(got) != tc.want {
				t.Fatalf("Check = %s, %v\nwant %s", got, err, tc.want)
			}
			again, err := Check(tc.kind, got, tc.root)
			if err != nil || string(again) != string(got) {
				t.Fatalf("Check of its own output = %s, %v", again, err)
			}
		})
	}
}

// FuzzCheck: any parameters are refused with ErrInvalid or come back
// normalized, and the normalized form checks to itself.
func FuzzCheck(f *testing.F) {
	kinds := []string{KindOAuth2, KindGCP, KindGitHub}
	for _, seed := range []struct {
		kind   uint8
		params string
	}{
		{0, `{"token_url":"https://auth.example/oauth/token","client_id":"c","scopes":["read","read"],"auth_style":"header"}`},
		{1, `{"scopes":["https://www.googleapis.com/auth/devstorage.read_only"]}`},
		{2, `{"app_id":"1","installation_id":2,"api_url":"https://ghe.example/api/v3/","permissions":{"contents":"read"},"repositories":["a"]}`},
	} {
		f.Add(seed.kind, seed.params)
	}
	rsaKey := testRSAKey(f, 0)
	roots := map[string][]byte{
		KindOAuth2: []byte(oauthSecret),
		KindGCP:    serviceAccountJSON(f, rsaKey, "https://oauth2.googleapis.com/token"),
		KindGitHub: pkcs1PEM(rsaKey),
	}
	f.Fuzz(func(t *testing.T, k uint8, params string) {
		kind := kinds[int(k)%len(kinds)]
		root := roots[kind]
		got, err := Check(kind, json.RawMessage(params), root)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Check: %v, not ErrInvalid", err)
			}
			return
		}
		again, err := Check(kind, got, root)
		if err != nil || string(again) != string(got) {
			t.Fatalf("Check(%s) = %s, then %s, %v", params, got, again, err)
		}
	})
}
