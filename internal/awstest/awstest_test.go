package awstest

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// TestAccount checks what tests rely on: signatures are checked, the user
// can only assume the role, and a session policy narrows the session as
// AWS would.
func TestAccount(t *testing.T) {
	a := Start(t, Options{Bucket: "data", Objects: map[string]string{"a.txt": "hello", "b.txt": "world"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stsWith := func(id, secret string) *sts.Client {
		return sts.New(sts.Options{Region: a.Region, BaseEndpoint: aws.String(a.Endpoint),
			Credentials: credentials.NewStaticCredentialsProvider(id, secret, "")})
	}
	s3With := func(c aws.Credentials) *s3.Client {
		return s3.New(s3.Options{Region: a.Region, BaseEndpoint: aws.String(a.Endpoint), UsePathStyle: true,
			Credentials: credentials.StaticCredentialsProvider{Value: c}})
	}
	code := func(err error) string {
		var api smithy.APIError
		if errors.As(err, &api) {
			return api.ErrorCode()
		}
		return "no API error: " + errString(err)
	}

	if _, err := stsWith(a.AccessKeyID, "wrong-secret-000000").GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); code(err) != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: got %v, want SignatureDoesNotMatch", err)
	}
	base := aws.Credentials{AccessKeyID: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey}
	if _, err := s3With(base).ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String(a.Bucket)}); code(err) != "AccessDenied" {
		t.Errorf("base user lists the bucket: got %v, want AccessDenied", err)
	}

	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::data/a.txt"]}]}`
	out, err := stsWith(a.AccessKeyID, a.SecretAccessKey).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(a.RoleARN), RoleSessionName: aws.String("t"), Policy: aws.String(policy), DurationSeconds: aws.Int32(900),
	})
	if err != nil {
		t.Fatalf("AssumeRole: %v", err)
	}
	sess := s3With(aws.Credentials{AccessKeyID: *out.Credentials.AccessKeyId, SecretAccessKey: *out.Credentials.SecretAccessKey, SessionToken: *out.Credentials.SessionToken})
	got, err := sess.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("a.txt")})
	if err != nil {
		t.Fatalf("GetObject allowed by the session policy: %v", err)
	}
	body, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if string(body) != "hello" {
		t.Errorf("GetObject: %q, want hello", body)
	}
	if _, err := sess.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("b.txt")}); code(err) != "AccessDenied" {
		t.Errorf("GetObject outside the session policy's resources: got %v, want AccessDenied", err)
	}
	if _, err := sess.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("data")}); code(err) != "AccessDenied" {
		t.Errorf("ListObjects outside the session policy's actions: got %v, want AccessDenied", err)
	}

	// Without a session policy the role's own policy (s3:*) applies.
	out, err = stsWith(a.AccessKeyID, a.SecretAccessKey).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(a.RoleARN), RoleSessionName: aws.String("t2"),
	})
	if err != nil {
		t.Fatalf("AssumeRole: %v", err)
	}
	wide := s3With(aws.Credentials{AccessKeyID: *out.Credentials.AccessKeyId, SecretAccessKey: *out.Credentials.SecretAccessKey, SessionToken: *out.Credentials.SessionToken})
	if _, err := wide.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("data")}); err != nil {
		t.Errorf("ListObjects under the role's policy: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
