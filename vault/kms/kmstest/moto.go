package kmstest

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stackctl/stack/internal/testenv"
)

// AWSEndpointEnv names an already running moto (or other AWS KMS
// compatible) endpoint for StartMoto to use instead of starting one.
const AWSEndpointEnv = "STACK_TEST_AWS_ENDPOINT"

// motoReadyWithin bounds how long StartMoto waits for moto_server to
// answer; it usually does in about 2 s.
const motoReadyWithin = 60 * time.Second

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
	bin := testenv.LookPath(t, "moto_server")
	port, err := freePort()
	if err != nil {
		t.Fatalf("kmstest: %v", err)
	}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("kmstest: start moto_server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		killProcessGroup(cmd)
		<-exited
	})
	endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
	if err := waitHTTP(endpoint, exited); err != nil {
		t.Fatalf("kmstest: moto_server: %v", err)
	}
	return endpoint
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// DeadEndpoint returns an http://127.0.0.1:PORT on which nothing listens,
// to test clients against a KMS that is down.
func DeadEndpoint(t testing.TB) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("kmstest: %v", err)
	}
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

// waitHTTP polls endpoint until it answers any HTTP response.
func waitHTTP(endpoint string, exited <-chan error) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(motoReadyWithin)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case werr := <-exited:
			return &exitError{werr}
		case <-tick.C:
		}
	}
}

type exitError struct{ err error }

func (e *exitError) Error() string { return "exited before answering: " + errString(e.err) }

func errString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
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
