package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/internal/awstest"
	"github.com/stackctl/stack/internal/stacktest"
)

const s3Host = "s3.moto.test"

// The agent's own AWS SDKs (boto3, aws-sdk-go-v2), configured with the
// placeholder as their access key id, list and read an S3 object through
// the sidecar, which re-signs each request with an STS session minted for
// the agent; moto checks every signature. A write the grant does not name
// is refused by the sidecar before it is signed.
func TestAWSSDKsThroughTheSidecar(t *testing.T) {
	acct := awstest.Start(t, awstest.Options{Bucket: "reports", Objects: map[string]string{"q4.csv": "region,revenue\nemea,42\n"}})
	e := newEnv(t)
	// S3 over TLS in front of moto, which speaks plain http, as real S3
	// does: HTTP/1.1 only, so a signed Content-Length must be sent. The
	// Host header the request was signed for goes through unchanged.
	target, _ := url.Parse(acct.Endpoint)
	moto := httputil.NewSingleHostReverseProxy(target)
	var h2 atomic.Int64
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 {
			h2.Add(1)
		}
		moto.ServeHTTP(w, r)
	}))
	front.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return e.up.CA.Leaf(s3Host) }}
	front.StartTLS()
	t.Cleanup(front.Close)
	_, port, _ := net.SplitHostPort(front.Listener.Addr().String())
	e.mustStack(acct.SecretAccessKey, "vault", "put", "aws", "--kind", "aws-sts", "--host", s3Host,
		"--role-arn", acct.RoleARN, "--region", acct.Region, "--access-key-id", acct.AccessKeyID, "--sts-endpoint", acct.Endpoint)
	if list := e.mustStack("", "vault", "list"); !strings.Contains(list, "aws-sts  15m0s") {
		t.Fatalf("vault list does not show the session lifetime:\n%s", list)
	}
	token := e.issue(agentID, "", "host="+s3Host+",credentials=aws,actions=s3:GetObject|s3:ListBucket|s3:PutObject,"+
		"resources=arn:aws:s3:::reports|arn:aws:s3:::reports/*,regions="+acct.Region)
	e.startProxy("--resolve", s3Host+"=127.0.0.1")
	endpoint := "https://" + s3Host + ":" + port

	t.Run("boto3", func(t *testing.T) {
		proxyURL := (&url.URL{Scheme: "http", User: url.UserPassword(agentID, token), Host: e.proxy.Listen}).String()
		script := `
import boto3, botocore.config, botocore.exceptions, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
    config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
keys = [o["Key"] for o in s3.list_objects(Bucket="reports").get("Contents", [])]
body = s3.get_object(Bucket="reports", Key="q4.csv")["Body"].read().decode()
s3.put_object(Bucket="reports", Key="from-boto3.csv", Body=b"written,by,boto3\n")
back = s3.get_object(Bucket="reports", Key="from-boto3.csv")["Body"].read().decode()
try:
    s3.delete_object(Bucket="reports", Key="q4.csv")
    delete = "allowed"
except botocore.exceptions.ClientError as err:
    delete = "%s %s" % (err.response["ResponseMetadata"]["HTTPStatusCode"], err.response["ResponseMetadata"]["HTTPHeaders"].get("x-stack-reason"))
print(keys, repr(body), repr(back), delete)
`
		r := e.run("", stacktest.ChildEnvWithout([]string{"AWS_"}, "HTTPS_PROXY="+proxyURL, "AWS_CA_BUNDLE="+e.caFile,
			"AWS_ACCESS_KEY_ID=stk_ph_aws", "AWS_SECRET_ACCESS_KEY=placeholder-secret", "AWS_EC2_METADATA_DISABLED=true",
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"), "python3", "-c", script, endpoint)
		want := `['q4.csv'] 'region,revenue\nemea,42\n' 'written,by,boto3\n' 403 scope_denied`
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != want {
			t.Fatalf("boto3: exit %d\nstdout: %s\nstderr: %s\nwant %s", r.Code, r.Stdout, r.Stderr, want)
		}
	})

	t.Run("aws-sdk-go-v2", func(t *testing.T) {
		c := s3.New(s3.Options{
			Region: acct.Region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider("stk_ph_aws", "placeholder-secret", ""),
			HTTPClient:  e.goClient(agentID, token), RetryMaxAttempts: 1,
		})
		ctx := context.Background()
		list, err := c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("reports")})
		if err != nil || len(list.Contents) == 0 || aws.ToString(list.Contents[len(list.Contents)-1].Key) != "q4.csv" {
			t.Fatalf("ListObjects: %v %+v", err, list)
		}
		obj, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("reports"), Key: aws.String("q4.csv")})
		if err != nil {
			t.Fatalf("GetObject: %v", err)
		}
		body, _ := io.ReadAll(obj.Body)
		obj.Body.Close()
		if string(body) != "region,revenue\nemea,42\n" {
			t.Fatalf("GetObject body %q", body)
		}
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("reports"), Key: aws.String("from-go.csv"),
			Body: strings.NewReader("written,by,go\n")}); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
		back, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("reports"), Key: aws.String("from-go.csv")})
		if err != nil {
			t.Fatalf("GetObject of the upload: %v", err)
		}
		body, _ = io.ReadAll(back.Body)
		back.Body.Close()
		if string(body) != "written,by,go\n" {
			t.Fatalf("the upload reads back as %q", body)
		}
		_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("reports"), Key: aws.String("q4.csv")})
		var re *awshttp.ResponseError
		if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden || re.Response.Header.Get("X-Stack-Reason") != "scope_denied" {
			t.Fatalf("DeleteObject outside the grant: %v, want the sidecar's 403 scope_denied", err)
		}
	})

	recs, _ := e.auditRecords()
	var ops []string
	for _, r := range recs {
		if r.Action == audit.ActionCredentialAccess && r.CredentialID == "aws" {
			ops = append(ops, r.Detail)
		}
	}
	if h2.Load() != 0 {
		t.Errorf("%d requests reached the front over HTTP/2; it speaks HTTP/1.1 only", h2.Load())
	}
	if len(ops) != 8 || !strings.Contains(strings.Join(ops, ";"), "aws s3:GetObject, minted, expires ") ||
		!strings.Contains(strings.Join(ops, ";"), "aws s3:PutObject, minted, expires ") {
		t.Errorf("credential_access details: %q", ops)
	}
	// The session the requests were signed with expires within 15
	// minutes of now.
	for _, d := range ops {
		_, at, _ := strings.Cut(d, "expires ")
		exp, err := time.Parse(time.RFC3339, at)
		if err != nil || time.Until(exp) > 15*time.Minute || time.Until(exp) < 10*time.Minute {
			t.Errorf("minted session expiry %q: want within 15 minutes of now", d)
		}
	}
	denials := 0
	for _, r := range recs {
		if r.Action == audit.ActionRequestDenied && r.Reason == "scope_denied" && r.Host == s3Host && r.Method == http.MethodDelete {
			denials++
		}
	}
	if denials != 2 {
		t.Errorf("%d scope_denied records for the deletes, want one per SDK", denials)
	}
}
