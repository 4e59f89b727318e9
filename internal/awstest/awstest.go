package awstest

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stackctl/stack/internal/testenv"
)

//go:embed moto_session_policy.py
var launcher []byte

// Region is the region of every account Start makes.
const Region = "us-east-1"

// Options say what the account holds besides its user and role.
type Options struct {
	// Bucket, when set, is created with Objects (key to content) in it.
	Bucket  string
	Objects map[string]string
	// RolePolicy is the role's own (identity) policy; empty means one that
	// allows s3:* on everything, so that only a session policy narrows
	// what a session may do.
	RolePolicy string
}

// Account is an AWS account served by moto on loopback, with signature
// checking and authorization on.
type Account struct {
	// Endpoint serves every service: http://127.0.0.1:PORT.
	Endpoint string
	Region   string
	// UserARN is an IAM user whose only permission is sts:AssumeRole on
	// RoleARN; AccessKeyID and SecretAccessKey are its key.
	UserARN         string
	AccessKeyID     string
	SecretAccessKey string
	// RoleARN is a role that trusts the user.
	RoleARN string
	// Bucket is Options.Bucket.
	Bucket string
}

// Start runs moto with session policies evaluated (moto_session_policy.py)
// on a free loopback port, creates the account's user, role, bucket and
// objects while authorization is still off, then turns it on: from then
// on every request must be signed by a known key and be allowed. The
// server stops when the test ends. Without python3 and moto the test is
// skipped, or fails in CI.
func Start(t testing.TB, opts Options) *Account {
	t.Helper()
	py := testenv.LookPath(t, "python3")
	if err := exec.Command(py, "-c", "import moto.server").Run(); err != nil {
		testenv.Missing(t, "python package moto is not installed")
	}
	script := filepath.Join(t.TempDir(), "moto_session_policy.py")
	if err := os.WriteFile(script, launcher, 0o600); err != nil {
		t.Fatalf("awstest: %v", err)
	}
	// Buckets are named in the path whatever the Host (a TLS front may
	// give one like s3.example.test), as STACK reads custom endpoints.
	endpoint := RunMoto(t, py, []string{script}, []string{"INITIAL_NO_AUTH_ACTION_COUNT=inf", "S3_IGNORE_SUBDOMAIN_BUCKETNAME=true"})
	a := &Account{Endpoint: endpoint, Region: Region, Bucket: opts.Bucket}
	a.setup(t, opts)
	a.post(t, "/moto-api/reset-auth", "0")
	return a
}

func (a *Account) setup(t testing.TB, opts Options) {
	t.Helper()
	a.UserARN = between(a.iam(t, url.Values{"Action": {"CreateUser"}, "UserName": {"stack-base"}}), "Arn")
	key := a.iam(t, url.Values{"Action": {"CreateAccessKey"}, "UserName": {"stack-base"}})
	a.AccessKeyID, a.SecretAccessKey = between(key, "AccessKeyId"), between(key, "SecretAccessKey")
	trust := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":%q},"Action":"sts:AssumeRole"}]}`, a.UserARN)
	a.RoleARN = between(a.iam(t, url.Values{"Action": {"CreateRole"}, "RoleName": {"stack-agents"}, "AssumeRolePolicyDocument": {trust}}), "Arn")
	rolePolicy := opts.RolePolicy
	if rolePolicy == "" {
		rolePolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`
	}
	a.iam(t, url.Values{"Action": {"PutRolePolicy"}, "RoleName": {"stack-agents"}, "PolicyName": {"role"}, "PolicyDocument": {rolePolicy}})
	userPolicy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":%q}]}`, a.RoleARN)
	a.iam(t, url.Values{"Action": {"PutUserPolicy"}, "UserName": {"stack-base"}, "PolicyName": {"assume"}, "PolicyDocument": {userPolicy}})
	if opts.Bucket == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := s3.New(s3.Options{
		Region: a.Region, BaseEndpoint: aws.String(a.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", ""),
	})
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(opts.Bucket)}); err != nil {
		t.Fatalf("awstest: create bucket %s: %v", opts.Bucket, err)
	}
	for k, v := range opts.Objects {
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(opts.Bucket), Key: aws.String(k), Body: strings.NewReader(v)}); err != nil {
			t.Fatalf("awstest: put object %s/%s: %v", opts.Bucket, k, err)
		}
	}
}

// iam calls an IAM action (query protocol) while authorization is off
// and returns the response body.
func (a *Account) iam(t testing.TB, form url.Values) string {
	t.Helper()
	form.Set("Version", "2010-05-08")
	body := form.Encode()
	req, err := http.NewRequest(http.MethodPost, a.Endpoint+"/", strings.NewReader(body))
	if err != nil {
		t.Fatalf("awstest: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: "testing", SecretAccessKey: "testing"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "iam", a.Region, time.Now()); err != nil {
		t.Fatalf("awstest: sign: %v", err)
	}
	return a.do(t, req, form.Get("Action"))
}

func (a *Account) post(t testing.TB, path, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.Endpoint+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("awstest: %v", err)
	}
	a.do(t, req, path)
}

func (a *Account) do(t testing.TB, req *http.Request, what string) string {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("awstest: %s: %v", what, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("awstest: %s: %s %v\n%s", what, resp.Status, err, b)
	}
	return string(b)
}

// between returns the text of the first <tag> element in an XML answer.
func between(doc, tag string) string {
	_, rest, ok := strings.Cut(doc, "<"+tag+">")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, "</"+tag+">")
	return v
}
