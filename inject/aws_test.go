package inject

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/stackctl/stack/inject/mint"
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

const v4EmptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func bearerRequest(target, token string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}
