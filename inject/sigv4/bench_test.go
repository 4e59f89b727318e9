package sigv4

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/stackctl/stack/passport"
)

// BenchmarkResign is the sidecar's cost for an AWS request once the
// session is minted and cached: Parse, Describe, Allow and Resign (and
// cloning the captured request, which a sidecar does not do).
func BenchmarkResign(b *testing.B) {
	narrow := &passport.Narrowing{Actions: []string{"s3:GetObject", "s3:PutObject", "sts:GetCallerIdentity"}, Resources: []string{"*"}}
	rec := &recorder{}
	_, _ = sts.New(sts.Options{Region: "us-east-1", Credentials: placeholder, HTTPClient: &http.Client{Transport: rec}}).
		GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	cases := []struct {
		name string
		req  *http.Request
		body []byte
	}{
		{"s3-GetObject", getObjectRequest(b), nil},
		{"s3-PutObject-trailer", s3Capture(b, "us-east-1", nil, func(ctx context.Context, c *s3.Client) error {
			_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("data"), Key: aws.String("k"), Body: strings.NewReader(strings.Repeat("x", 64<<10))})
			return err
		}), nil},
		{"sts-GetCallerIdentity-hashed", rec.last(b), []byte("Action=GetCallerIdentity&Version=2011-06-15")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				req := withBody(c.req, c.body)
				s, _, err := Parse(req)
				if err != nil {
					b.Fatal(err)
				}
				op, err := Describe(req, s)
				if err != nil {
					b.Fatal(err)
				}
				if err := Allow(narrow, s.Region, op); err != nil {
					b.Fatal(err)
				}
				if err := Resign(req, s, testSession, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
