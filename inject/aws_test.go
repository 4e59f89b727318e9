package inject

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/inject/sigv4"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// countingStore is memStore counting the secrets it hands out.
type countingStore struct {
	*memStore
	asked int
}

func (s *countingStore) Secret(ctx context.Context, name string, g Grant) (mint.Token, error) {
	s.asked++
	if s.creds[name].Render.Kind != SigV4 {
		return s.memStore.Secret(ctx, name, g)
	}
	return mint.Token{AWS: &mint.AWSSession{AccessKeyID: "ASIAMINTED", SecretAccessKey: "minted-secret", SessionToken: "minted-session"},
		Expiry: time.Now().Add(15 * time.Minute)}, nil
}

// An AWS credential is re-signed only for a SigV4 request the agent
// signed with its placeholder, and only for what the grant allows; every
// refusal comes before anything is minted.
func TestAWSRequestsCheckedBeforeMinting(t *testing.T) {
	st := &countingStore{memStore: newStore()}
	st.creds["aws"] = Credential{Name: "aws", Hosts: []string{"s3.amazonaws.com"}, Render: Render{Kind: SigV4}, Kind: mint.KindAWS}
	read := func(string) (Grant, bool) {
		return Grant{Agent: "a", Narrow: &passport.Narrowing{Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::b/*"}}}, true
	}
	signed := func(method, target, keyID string) *http.Request {
		req, _ := http.NewRequest(method, target, nil)
		err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyID, SecretAccessKey: "anything"},
			req, v4EmptyHash, "s3", "us-east-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Amz-Content-Sha256", v4EmptyHash)
		return req
	}
	withHash := func(hash string) *http.Request {
		req := signed(http.MethodGet, "https://s3.amazonaws.com/b/k", "stk_ph_aws")
		req.Header.Set("X-Amz-Content-Sha256", hash)
		return req
	}
	presigned := func() *http.Request {
		req, _ := http.NewRequest(http.MethodGet, "https://s3.amazonaws.com/b/k", nil)
		u, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: "stk_ph_aws", SecretAccessKey: "anything"},
			req, "UNSIGNED-PAYLOAD", "s3", "us-east-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, _ = http.NewRequest(http.MethodGet, u, nil)
		return req
	}
	in := New(st, Options{})
	for _, tc := range []struct {
		name   string
		req    *http.Request
		reason string
		detail string // in the refusal
	}{
		{"bearer placeholder", bearerRequest("https://s3.amazonaws.com/b/k", "stk_ph_aws"), reason.SigV4Unsupported, "sign the request with AWS SigV4"},
		{"action not granted", signed(http.MethodPut, "https://s3.amazonaws.com/b/k", "stk_ph_aws"), reason.ScopeDenied, "s3:PutObject"},
		{"resource not granted", signed(http.MethodGet, "https://s3.amazonaws.com/other/k", "stk_ph_aws"), reason.ScopeDenied, "arn:aws:s3:::other/k"},
		// Granted, but not re-signable: refused before a session is minted.
		{"presigned URL", presigned(), reason.SigV4Unsupported, "presigned URLs"},
		{"signed aws-chunked", withHash("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"), reason.SigV4Unsupported, "signed aws-chunked"},
		{"signed aws-chunked with trailer", withHash("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"), reason.SigV4Unsupported, "signed aws-chunked"},
		{"unknown payload hash", withHash("SOMETHING-ELSE"), reason.SigV4Unsupported, "unknown x-amz-content-sha256"},
		{"invalid digest", withHash(v4EmptyHash[:63]), reason.SigV4Unsupported, "unknown x-amz-content-sha256"},
	} {
		_, err := in.Apply(context.Background(), tc.req, "s3.amazonaws.com", read)
		var de *DeniedError
		if !errors.As(err, &de) || de.Reason != tc.reason || !strings.Contains(de.Detail, tc.detail) {
			t.Errorf("%s: %v, want %s saying %q", tc.name, err, tc.reason, tc.detail)
		}
		if st.asked != 0 {
			t.Fatalf("%s: %d mints for a refused request", tc.name, st.asked)
		}
	}
	if st.asked != 0 {
		t.Fatalf("%d mints for refused requests", st.asked)
	}
	req := signed(http.MethodGet, "https://s3.amazonaws.com/b/k", "stk_ph_aws")
	res, err := in.Apply(context.Background(), req, "s3.amazonaws.com", read)
	if err != nil || st.asked != 1 || len(res.Injected) != 1 || res.Injected[0].Operation != "s3:GetObject" ||
		string(res.Injected[0].Secret) != "minted-session" {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if got := req.Header.Get("X-Amz-Security-Token"); got != "minted-session" {
		t.Errorf("session token header %q", got)
	}
	if auth := req.Header.Get("Authorization"); len(auth) < 40 || auth[:39] != "AWS4-HMAC-SHA256 Credential=ASIAMINTED/" {
		t.Errorf("Authorization %q, want a signature by the minted key", auth)
	}
}

// signedS3 is a request the agent's SDK signed with keyID.
func signedS3(t *testing.T, method, target, keyID string) *http.Request {
	t.Helper()
	req, _ := http.NewRequest(method, target, nil)
	req.Header.Set("X-Amz-Content-Sha256", v4EmptyHash)
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyID, SecretAccessKey: "anything"},
		req, v4EmptyHash, "s3", "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// checkSignature makes the signature of req again from what req carries
// now, with secret, as AWS does to check it, and compares.
func checkSignature(t *testing.T, req *http.Request, secret string) {
	t.Helper()
	s, ok, err := sigv4.Parse(req)
	if err != nil || !ok {
		t.Fatalf("Parse: %v, %v", ok, err)
	}
	at, err := time.Parse("20060102T150405Z", req.Header.Get("X-Amz-Date"))
	if err != nil {
		t.Fatal(err)
	}
	want := req.Clone(context.Background())
	for k := range want.Header {
		// The signer adds its own date, session token and Authorization.
		switch lk := strings.ToLower(k); {
		case lk == "x-amz-date", lk == "x-amz-security-token", !slices.Contains(s.SignedHeaders, lk):
			delete(want.Header, k)
		}
	}
	creds := aws.Credentials{AccessKeyID: s.KeyID, SecretAccessKey: secret, SessionToken: req.Header.Get("X-Amz-Security-Token")}
	err = v4.NewSigner().SignHTTP(context.Background(), creds, want, req.Header.Get("X-Amz-Content-Sha256"), s.Service, s.Region, at,
		func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err != nil {
		t.Fatal(err)
	}
	if got, w := req.Header.Get("Authorization"), want.Header.Get("Authorization"); got != w {
		t.Errorf("the request as sent does not match its signature:\n got %s\nwant %s", got, w)
	}
}

// An AWS request that carries another credential's placeholder too is
// signed after that credential is written: the signature covers the
// request as it leaves.
func TestAWSSignedLast(t *testing.T) {
	st := &countingStore{memStore: newStore()}
	st.creds["aws"] = Credential{Name: "aws", Hosts: []string{"s3.amazonaws.com"}, Render: Render{Kind: SigV4}, Kind: mint.KindAWS}
	st.creds["tenant"] = Credential{Name: "tenant", Hosts: []string{"s3.amazonaws.com"}, Render: Render{Kind: Query, Name: "tenant-key"}}
	st.creds["gateway"] = Credential{Name: "gateway", Hosts: []string{"s3.amazonaws.com"}, Render: Render{Kind: Header, Name: "X-Api-Key", Template: "{secret}"}}
	st.secrets["tenant"], st.secrets["gateway"] = "tenant-REAL", "gateway-REAL"
	grants := func(string) (Grant, bool) {
		return Grant{Agent: "a", Narrow: &passport.Narrowing{Actions: []string{"s3:*"}}}, true
	}
	in := New(st, Options{})

	// The agent signed the placeholders, in the query and in a header.
	req, _ := http.NewRequest(http.MethodGet, "https://s3.amazonaws.com/b/k?tenant-key=stk_ph_tenant", nil)
	req.Header.Set("X-Api-Key", "stk_ph_gateway")
	req.Header.Set("X-Amz-Content-Sha256", v4EmptyHash)
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: "stk_ph_aws", SecretAccessKey: "anything"},
		req, v4EmptyHash, "s3", "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err := in.Apply(context.Background(), req, "s3.amazonaws.com", grants)
	if err != nil || len(res.Injected) != 3 {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if req.URL.Query().Get("tenant-key") != "tenant-REAL" || req.Header.Get("X-Api-Key") != "gateway-REAL" {
		t.Fatalf("rendered %q, %q", req.URL.RawQuery, req.Header.Get("X-Api-Key"))
	}
	checkSignature(t, req, "minted-secret")
	if s, _, _ := sigv4.Parse(req); !slices.Contains(s.SignedHeaders, "x-api-key") {
		t.Errorf("signed headers %v: the rendered X-Api-Key is not signed", s.SignedHeaders)
	}

	// A credential that renders into Authorization cannot share a request
	// with the signature there: refused before anything is minted.
	st.asked = 0
	st.creds["gateway"] = Credential{Name: "gateway", Hosts: []string{"s3.amazonaws.com"}, Render: Render{Kind: Header, Name: "Authorization", Template: "token {secret}"}}
	req = signedS3(t, http.MethodGet, "https://s3.amazonaws.com/b/k", "stk_ph_aws")
	req.Header.Set("X-Api-Key", "stk_ph_gateway")
	_, err = in.Apply(context.Background(), req, "s3.amazonaws.com", grants)
	var de *DeniedError
	if !errors.As(err, &de) || de.Reason != reason.ScopeDenied || de.Credential != "gateway" || st.asked != 0 {
		t.Fatalf("Apply: %v after %d mints, want scope_denied for gateway and no mint", err, st.asked)
	}
}

const v4EmptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func bearerRequest(target, token string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}
