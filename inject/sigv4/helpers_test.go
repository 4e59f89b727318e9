package sigv4

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/passport"
)

// placeholder is the key the agent's SDK is configured with.
var placeholder = credentials.NewStaticCredentialsProvider("stk_ph_aws", "any-secret-the-agent-likes", "")

// recorder is an http.RoundTripper that keeps every request a real SDK
// sends, with its body read, and answers 200 with an empty body: a way to
// capture what the SDK puts on the wire for any endpoint, AWS's included,
// without a network.
type recorder struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies [][]byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.bodies = append(r.bodies, body)
	r.mu.Unlock()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// last returns a fresh copy of the last request recorded, with its body.
func (r *recorder) last(t testing.TB) *http.Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("no request recorded")
	}
	return withBody(r.reqs[len(r.reqs)-1], r.bodies[len(r.bodies)-1])
}

// withBody clones req with body as its body, as a request read off the
// wire has it: no GetBody.
func withBody(req *http.Request, body []byte) *http.Request {
	c := req.Clone(context.Background())
	c.Body, c.GetBody = io.NopCloser(bytes.NewReader(body)), nil
	if body == nil {
		c.Body = http.NoBody
	}
	return c
}

// s3Capture runs call with an S3 client configured as
// config.LoadDefaultConfig would (checksums when supported), with the
// placeholder key, edited by edit, and returns the request it sent.
func s3Capture(t testing.TB, region string, edit func(*s3.Options), call func(context.Context, *s3.Client) error) *http.Request {
	t.Helper()
	rec := &recorder{}
	opts := s3.Options{Region: region, Credentials: placeholder, HTTPClient: &http.Client{Transport: rec}, RetryMaxAttempts: 1,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported}
	if edit != nil {
		edit(&opts)
	}
	_ = call(context.Background(), s3.New(opts)) // the empty answers do not parse; only the request matters
	return rec.last(t)
}

// resigner is what a sidecar does to an AWS request signed with the
// placeholder key: Parse, Describe, Allow, Resign, then forward.
type resigner struct {
	narrow *passport.Narrowing
	sess   *mint.AWSSession
	// skipAllow re-signs what Allow refuses, to see what AWS answers.
	skipAllow bool
	next      http.RoundTripper

	mu   sync.Mutex
	seen []Signed
	ops  []Operation
}

func (r *resigner) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	if err := r.prepare(req); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return r.next.RoundTrip(req)
}

func (r *resigner) prepare(req *http.Request) error {
	s, ok, err := Parse(req)
	if err != nil {
		return err
	}
	if !ok || s.KeyID != "stk_ph_aws" {
		return errors.New("not signed with the placeholder key")
	}
	op, err := Describe(req, s)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.seen, r.ops = append(r.seen, s), append(r.ops, op)
	r.mu.Unlock()
	if err := Allow(r.narrow, s.Region, op); err != nil && !r.skipAllow {
		return err
	}
	return Resign(req, s, r.sess, time.Now())
}

func (r *resigner) lastSigned() Signed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[len(r.seen)-1]
}

// agentS3 is the agent's S3 client: placeholder key, path-style, endpoint
// ep, every request through rt.
func agentS3(ep string, rt http.RoundTripper, client *http.Client) *s3.Client {
	if client == nil {
		client = &http.Client{}
	}
	client.Transport = rt
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(ep), UsePathStyle: true,
		Credentials: placeholder, HTTPClient: client, RetryMaxAttempts: 1,
		// As config.LoadDefaultConfig has it.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
	})
}

func authParts(t testing.TB, req *http.Request) Signed {
	t.Helper()
	s, ok, err := Parse(req)
	if err != nil || !ok {
		t.Fatalf("Parse after Resign: ok %v, %v (Authorization %q)", ok, err, req.Header.Get("Authorization"))
	}
	return s
}
