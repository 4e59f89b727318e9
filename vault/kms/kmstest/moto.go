package kmstest

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stackctl/stack/internal/awstest"
	"github.com/stackctl/stack/internal/testenv"
)

// AWSEndpointEnv names an already running moto (or other AWS KMS
// compatible) endpoint for StartMoto to use instead of starting one.
const AWSEndpointEnv = "STACK_TEST_AWS_ENDPOINT"

// StartMoto returns the endpoint of a moto AWS KMS server on loopback. It
// uses $STACK_TEST_AWS_ENDPOINT when set; otherwise it starts
// `moto_server -H 127.0.0.1 -p PORT` on a free port, waits until it
// answers and stops it when the test ends. Without moto_server the test is
// skipped, or fails in CI (testenv.Missing).
func StartMoto(t testing.TB) (endpoint string) {
	t.Helper()
	if ep := os.Getenv(AWSEndpointEnv); ep != "" {
		return ep
	}
	return awstest.RunMoto(t, testenv.LookPath(t, "moto_server"), nil, nil)
}

// DeadEndpoint returns an http://127.0.0.1:PORT on which nothing listens,
// to test clients against a KMS that is down.
func DeadEndpoint(t testing.TB) string {
	t.Helper()
	port, err := awstest.FreePort()
	if err != nil {
		t.Fatalf("kmstest: %v", err)
	}
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

// SetAWSEnv points kms.Open's awskms backend at endpoint, with moto's
// static credentials testing/testing and region us-east-1, for the rest of
// the test. It keeps the host's AWS profile and metadata service out.
func SetAWSEnv(t testing.TB, endpoint string) {
	t.Helper()
	t.Setenv("AWS_ENDPOINT_URL_KMS", endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// CreateAWSKey creates a symmetric key in the AWS KMS at endpoint (moto)
// and returns its key ID.
func CreateAWSKey(t testing.TB, endpoint string) (keyID string) {
	t.Helper()
	client := awskms.New(awskms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := client.CreateKey(ctx, &awskms.CreateKeyInput{Description: aws.String("stack test key")})
	if err != nil {
		t.Fatalf("kmstest: create AWS key at %s: %v", endpoint, err)
	}
	return aws.ToString(out.KeyMetadata.KeyId)
}

// CreateAWSAlias points alias (e.g. "alias/stack") at keyID.
func CreateAWSAlias(t testing.TB, endpoint, alias, keyID string) {
	t.Helper()
	client := awskms.New(awskms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("kmstest: create AWS alias %s: %v", alias, err)
	}
}
