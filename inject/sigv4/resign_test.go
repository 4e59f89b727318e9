package sigv4

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/reason"
)

var testSession = &mint.AWSSession{
	AccessKeyID:     "ASIAEXAMPLESESSION01",
	SecretAccessKey: "sessionSecretsessionSecretsessionSecret0",
	SessionToken:    "FwoGZXIvYXdzEXAMPLEsessionTOKEN",
}

var signTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func getObjectRequest(t testing.TB) *http.Request {
	return s3Capture(t, "us-west-2", nil, func(ctx context.Context, c *s3.Client) error {
		_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("dir/a b.txt")})
		return err
	})
}

func TestResignGetObject(t *testing.T) {
	req := getObjectRequest(t)
	agentSigned, _, _ := Parse(req)
	req.Header.Set("X-Extra", "added-after-the-agent-signed")
	req.Header.Set("X-Amz-Security-Token", "stk_ph_aws-token")
	if err := Resign(req, agentSigned, testSession, signTime); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	s := authParts(t, req)
	if s.KeyID != testSession.AccessKeyID || s.Date != "20260102" || s.Region != "us-west-2" || s.Service != "s3" {
		t.Errorf("re-signed scope %+v", s)
	}
	if got := req.Header.Values("X-Amz-Security-Token"); !slices.Equal(got, []string{testSession.SessionToken}) {
		t.Errorf("X-Amz-Security-Token %q", got)
	}
	if got := req.Header.Get("X-Amz-Date"); got != "20260102T030405Z" {
		t.Errorf("X-Amz-Date %q", got)
	}
	if got := req.Header.Get("X-Amz-Content-Sha256"); got != sha256Hex(nil) {
		t.Errorf("X-Amz-Content-Sha256 %q, want the agent's", got)
	}
	want := []string{"amz-sdk-invocation-id", "amz-sdk-request", "host", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token"}
	if !slices.Equal(s.SignedHeaders, want) {
		t.Errorf("signed headers %v, want %v (the agent's, less accept-encoding, plus the session token)", s.SignedHeaders, want)
	}
	for _, h := range []string{"User-Agent", "Accept-Encoding", "X-Extra"} {
		if req.Header.Get(h) == "" {
			t.Errorf("%s is gone: unsigned headers are still sent", h)
		}
	}
	if strings.Contains(req.Header.Get("Authorization"), "stk_ph_") {
		t.Error("the placeholder is still in Authorization")
	}
}

func TestResignTrailer(t *testing.T) {
	// Over TLS, the SDK sends PutObject as aws-chunked with a trailing
	// checksum and no chunk signatures.
	req := s3Capture(t, "us-west-2", nil, func(ctx context.Context, c *s3.Client) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("data"), Key: aws.String("k"), Body: strings.NewReader("hello")})
		return err
	})
	agentSigned, _, _ := Parse(req)
	if agentSigned.PayloadHash != StreamingUnsignedTrailer {
		t.Fatalf("the SDK sent x-amz-content-sha256 %q, want %s", agentSigned.PayloadHash, StreamingUnsignedTrailer)
	}
	body := req.Body
	if err := Resign(req, agentSigned, testSession, signTime); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	if req.Body != body {
		t.Error("Resign read a body it need not hash")
	}
	s := authParts(t, req)
	for _, h := range []string{"content-encoding", "content-length", "x-amz-content-sha256", "x-amz-decoded-content-length", "x-amz-trailer"} {
		if !slices.Contains(s.SignedHeaders, h) {
			t.Errorf("%s not signed: %v", h, s.SignedHeaders)
		}
	}
	if req.Header.Get("X-Amz-Content-Sha256") != StreamingUnsignedTrailer {
		t.Errorf("payload hash %q", req.Header.Get("X-Amz-Content-Sha256"))
	}
}

func TestResignHashesBody(t *testing.T) {
	rec := &recorder{}
	_, _ = sts.New(sts.Options{Region: "us-east-1", Credentials: placeholder, HTTPClient: &http.Client{Transport: rec}}).
		GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	captured := rec.last(t)
	wantBody := "Action=GetCallerIdentity&Version=2011-06-15"

	for _, chunked := range []bool{false, true} {
		req := captured.Clone(context.Background())
		req.Body = io.NopCloser(strings.NewReader(wantBody))
		if chunked {
			req.ContentLength, req.TransferEncoding = -1, []string{"chunked"}
		}
		s, _, _ := Parse(req)
		if s.PayloadHash != "" {
			t.Fatalf("STS request with x-amz-content-sha256 %q", s.PayloadHash)
		}
		// Check reads the body to hash it, and leaves it for Resign.
		if err := Check(req, s); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if err := Resign(req, s, testSession, signTime); err != nil {
			t.Fatalf("Resign: %v", err)
		}
		if req.Header.Get("X-Amz-Content-Sha256") != "" {
			t.Error("x-amz-content-sha256 set on a non-S3 request")
		}
		if req.ContentLength != int64(len(wantBody)) || req.TransferEncoding != nil {
			t.Errorf("ContentLength %d, TransferEncoding %v: want the body's length, not chunked", req.ContentLength, req.TransferEncoding)
		}
		if !slices.Contains(authParts(t, req).SignedHeaders, "content-length") {
			t.Error("content-length not signed")
		}
		for _, read := range []func() (io.ReadCloser, error){func() (io.ReadCloser, error) { return req.Body, nil }, req.GetBody} {
			rc, err := read()
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(rc); string(b) != wantBody {
				t.Errorf("body after Resign %q, want %q", b, wantBody)
			}
		}
		// The signature is the one made over the body's hash.
		want := captured.Clone(context.Background())
		want.Body = io.NopCloser(strings.NewReader(wantBody))
		want.ContentLength = int64(len(wantBody))
		for k := range want.Header {
			if !slices.Contains(s.SignedHeaders, strings.ToLower(k)) || strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "X-Amz-Date") {
				delete(want.Header, k)
			}
		}
		creds := aws.Credentials{AccessKeyID: testSession.AccessKeyID, SecretAccessKey: testSession.SecretAccessKey, SessionToken: testSession.SessionToken}
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, want, sha256Hex([]byte(wantBody)), "sts", "us-east-1", signTime); err != nil {
			t.Fatal(err)
		}
		if got, w := req.Header.Get("Authorization"), want.Header.Get("Authorization"); got != w {
			t.Errorf("Authorization\n got %s\nwant %s", got, w)
		}
	}
}

func TestResignS3WithoutPayloadHash(t *testing.T) {
	req := signedBy(t, newRequest(t, "PUT", "http://127.0.0.1:9000/data/k", "hello", nil), "s3", "us-east-1", "hello")
	req.Header.Del("X-Amz-Content-Sha256")
	s, _, _ := Parse(req)
	if err := Resign(req, s, testSession, signTime); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	if got := req.Header.Get("X-Amz-Content-Sha256"); got != sha256Hex([]byte("hello")) {
		t.Errorf("X-Amz-Content-Sha256 %q, want the body's hash", got)
	}
	if !slices.Contains(authParts(t, req).SignedHeaders, "x-amz-content-sha256") {
		t.Error("x-amz-content-sha256 not signed")
	}
}

func TestResignRefuses(t *testing.T) {
	presigned, err := s3.NewPresignClient(s3.New(s3.Options{Region: "us-east-1", Credentials: placeholder})).
		PresignGetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("a.txt")})
	if err != nil {
		t.Fatal(err)
	}
	withHash := func(h string) func() *http.Request {
		return func() *http.Request {
			r := newRequest(t, "PUT", "https://data.s3.amazonaws.com/k", "5;chunk-signature="+sig64+"\r\nhello\r\n", map[string]string{
				"Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": "5",
			})
			creds := aws.Credentials{AccessKeyID: "stk_ph_aws", SecretAccessKey: "x"}
			if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, h, "s3", "us-east-1", time.Now()); err != nil {
				t.Fatal(err)
			}
			r.Header.Set("X-Amz-Content-Sha256", h)
			return r
		}
	}
	big := func() *http.Request {
		r := signedBy(t, newRequest(t, "POST", "https://sqs.us-east-1.amazonaws.com/", "", nil), "sqs", "us-east-1", "")
		r.Body, r.ContentLength = io.NopCloser(io.LimitReader(zeros{}, MaxBody+1)), -1
		return r
	}
	bigKnown := func() *http.Request {
		r := big()
		r.ContentLength = MaxBody + 1
		return r
	}
	cases := []struct {
		name    string
		req     func() *http.Request
		sess    *mint.AWSSession
		wantErr string
	}{
		{name: "presigned URL", req: func() *http.Request { r, _ := http.NewRequest("GET", presigned.URL, nil); return r }, wantErr: "presigned URLs"},
		{name: "signed aws-chunked", req: withHash("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"), wantErr: "signed aws-chunked"},
		{name: "signed aws-chunked with trailer", req: withHash("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"), wantErr: "signed aws-chunked"},
		{name: "signed aws-chunked, SigV4a", req: withHash("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"), wantErr: "signed aws-chunked"},
		{name: "signed aws-chunked, SigV4a with trailer", req: withHash("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"), wantErr: "signed aws-chunked"},
		{name: "unknown payload hash", req: withHash("SOMETHING-ELSE"), wantErr: "unknown x-amz-content-sha256"},
		{name: "upper-case digest", req: withHash(strings.ToUpper(sha256Hex(nil))), wantErr: "unknown x-amz-content-sha256"},
		{name: "body too large to hash", req: big, wantErr: "larger than 16 MiB"},
		{name: "body announced too large to hash", req: bigKnown, wantErr: "larger than 16 MiB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := c.req()
			s, ok, err := Parse(req)
			if err != nil || !ok {
				t.Fatalf("Parse: %v, %v", ok, err)
			}
			before := req.Header.Get("Authorization") + req.URL.RawQuery
			// Check refuses it as Resign does, before a session is minted.
			var e *Error
			if err := Check(req, s); !errors.As(err, &e) || e.Reason != reason.SigV4Unsupported || !strings.Contains(e.Detail, c.wantErr) {
				t.Fatalf("Check: %v, want sigv4_unsupported with %q", err, c.wantErr)
			}
			err = Resign(req, s, testSession, signTime)
			if !errors.As(err, &e) || e.Reason != reason.SigV4Unsupported || !strings.Contains(e.Detail, c.wantErr) {
				t.Fatalf("Resign: %v, want sigv4_unsupported with %q", err, c.wantErr)
			}
			if req.Header.Get("X-Amz-Security-Token") != "" || req.Header.Get("Authorization")+req.URL.RawQuery != before {
				t.Error("a refused request was changed: it must not look re-signed")
			}
		})
	}
	req := getObjectRequest(t)
	s, _, _ := Parse(req)
	if err := Resign(req, s, nil, signTime); err == nil {
		t.Error("Resign without a session: no error")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
