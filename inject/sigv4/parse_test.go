package sigv4

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const sig64 = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"

func TestParse(t *testing.T) {
	get := s3Capture(t, "us-west-2", nil, func(ctx context.Context, c *s3.Client) error {
		_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("a.txt")})
		return err
	})
	s, ok, err := Parse(get)
	if err != nil || !ok {
		t.Fatalf("Parse(GetObject): %v, %v", ok, err)
	}
	if s.KeyID != "stk_ph_aws" || s.Region != "us-west-2" || s.Service != "s3" || s.Presigned ||
		s.Date != time.Now().UTC().Format("20060102") || s.PayloadHash != sha256Hex(nil) ||
		!slices.Contains(s.SignedHeaders, "host") || !slices.Contains(s.SignedHeaders, "x-amz-date") {
		t.Errorf("Parse(GetObject) = %+v", s)
	}

	presign, err := s3.NewPresignClient(s3.New(s3.Options{Region: "eu-west-1", Credentials: placeholder})).
		PresignGetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("a.txt")})
	if err != nil {
		t.Fatal(err)
	}
	preq, _ := http.NewRequest(presign.Method, presign.URL, nil)
	s, ok, err = Parse(preq)
	if err != nil || !ok || !s.Presigned || s.KeyID != "stk_ph_aws" || s.Region != "eu-west-1" || s.Service != "s3" {
		t.Errorf("Parse(presigned) = %+v, %v, %v", s, ok, err)
	}

	auth := func(v string) *http.Request {
		r, _ := http.NewRequest("GET", "https://s3.amazonaws.com/b/k", nil)
		r.Header.Set("Authorization", v)
		return r
	}
	good := "AWS4-HMAC-SHA256 Credential=stk_ph_aws/20240101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + sig64
	cases := []struct {
		name    string
		req     *http.Request
		ok      bool
		wantErr string
	}{
		{name: "no authorization", req: auth(""), ok: false},
		{name: "bearer", req: auth("Bearer stk_ph_x"), ok: false},
		{name: "sigv2", req: auth("AWS stk_ph_aws:c2lnbmF0dXJl"), ok: false},
		{name: "good", req: auth(good), ok: true},
		{name: "no spaces after commas", req: auth(strings.ReplaceAll(good, ", ", ",")), ok: true},
		{name: "sigv4a", req: auth("AWS4-ECDSA-P256-SHA256 Credential=stk_ph_aws/20240101/s3/aws4_request, SignedHeaders=host, Signature=3045"), ok: true, wantErr: "SigV4a"},
		{name: "other algorithm", req: auth("AWS4-HMAC-SHA512 Credential=a/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=" + sig64), ok: true, wantErr: "unknown signing algorithm"},
		{name: "short credential", req: auth(strings.Replace(good, "/us-east-1", "", 1)), ok: true, wantErr: "Credential=KEYID"},
		{name: "key id with slash", req: auth(strings.Replace(good, "stk_ph_aws", "a/b", 1)), ok: true, wantErr: "Credential=KEYID"},
		{name: "bad date", req: auth(strings.Replace(good, "20240101", "2024-1-1", 1)), ok: true, wantErr: "date"},
		{name: "bad region", req: auth(strings.Replace(good, "us-east-1", "US_EAST", 1)), ok: true, wantErr: "region"},
		{name: "no host signed", req: auth(strings.Replace(good, "host;", "", 1)), ok: true, wantErr: "host"},
		{name: "upper-case signed header", req: auth(strings.Replace(good, "x-amz-date", "X-Amz-Date", 1)), ok: true, wantErr: "lower-case"},
		{name: "short signature", req: auth(good[:len(good)-1]), ok: true, wantErr: "64 lower-case hex"},
		{name: "component twice", req: auth(good + ", Signature=" + sig64), ok: true, wantErr: "twice"},
		{name: "unknown component", req: auth(good + ", Foo=bar"), ok: true, wantErr: "unknown component"},
		{name: "missing signature", req: auth(good[:strings.Index(good, ", Signature")]), ok: true, wantErr: "want Credential"},
		{name: "header and query", req: func() *http.Request {
			r := auth(good)
			r.URL.RawQuery = "X-Amz-Signature=" + sig64
			return r
		}(), ok: true, wantErr: "both"},
		{name: "two authorization headers", req: func() *http.Request {
			r := auth(good)
			r.Header.Add("Authorization", good)
			return r
		}(), ok: true, wantErr: "more than one"},
		{name: "presigned without a date", req: func() *http.Request {
			r := auth("")
			q := url.Values{"X-Amz-Algorithm": {Algorithm}, "X-Amz-Credential": {"k/20240101/us-east-1/s3/aws4_request"},
				"X-Amz-SignedHeaders": {"host"}, "X-Amz-Signature": {sig64}}
			r.URL.RawQuery = q.Encode()
			return r
		}(), ok: true, wantErr: "X-Amz-Date"},
		{name: "lower-case presign parameter", req: func() *http.Request {
			r := auth("")
			r.URL.RawQuery = "x-amz-signature=" + sig64
			return r
		}(), ok: true, wantErr: "presigned"},
		{name: "two payload hashes", req: func() *http.Request {
			r := auth(good)
			r.Header.Add("X-Amz-Content-Sha256", UnsignedPayload)
			r.Header.Add("X-Amz-Content-Sha256", sha256Hex(nil))
			return r
		}(), ok: true, wantErr: "x-amz-content-sha256 more than once"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, ok, err := Parse(c.req)
			if ok != c.ok {
				t.Errorf("ok = %v, want %v", ok, c.ok)
			}
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if ok && (s.KeyID != "stk_ph_aws" || s.Date != "20240101") {
					t.Errorf("Parse = %+v", s)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrUnsupported) || !strings.Contains(e.Detail, c.wantErr) {
				t.Fatalf("Parse: %v, want an unsupported error with %q", err, c.wantErr)
			}
		})
	}
}

// FuzzParse: Parse never panics, and what it accepts is well formed.
func FuzzParse(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=stk_ph_aws/20240101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature="+sig64, "")
	f.Add("", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=k%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature="+sig64)
	f.Add("AWS4-ECDSA-P256-SHA256 Credential=a/b/c/aws4_request, SignedHeaders=host, Signature=00", "")
	f.Add("AWS4-HMAC-SHA256 Credential=,,,=", "x-amz-credential=%zz")
	f.Fuzz(func(t *testing.T, authorization, query string) {
		req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "https", Host: "s3.amazonaws.com", Path: "/", RawQuery: query}, Header: http.Header{}}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		s, ok, err := Parse(req)
		if err != nil {
			if !ok || !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Parse error %v with ok=%v: want ok and ErrUnsupported", err, ok)
			}
			return
		}
		if !ok {
			return
		}
		if s.KeyID == "" || len(s.Date) != 8 || s.Region == "" || s.Service == "" || !slices.Contains(s.SignedHeaders, "host") {
			t.Fatalf("Parse accepted %+v", s)
		}
		if strings.ContainsAny(s.KeyID, " \t\r\n/,=") {
			t.Fatalf("Parse accepted key id %q", s.KeyID)
		}
	})
}
