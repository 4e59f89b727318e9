package sigv4

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/internal/awstest"
	"github.com/stackctl/stack/internal/testenv"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// mintSession mints a session from acct's role for narrow, as a sidecar
// does before re-signing.
func mintSession(t testing.TB, acct *awstest.Account, agent string, narrow *passport.Narrowing) *mint.AWSSession {
	t.Helper()
	params, err := json.Marshal(mint.AWSParams{RoleARN: acct.RoleARN, Region: acct.Region, STSEndpoint: acct.Endpoint, AccessKeyID: acct.AccessKeyID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := mint.Mint(ctx, mint.Env{}, mint.Request{Kind: mint.KindAWS, Params: params, Root: []byte(acct.SecretAccessKey), Agent: agent, Narrow: narrow})
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return tok.AWS
}

func apiCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// TestMoto re-signs real SDKs' requests for moto, which checks every
// signature and evaluates the session policies (one account for all).
func TestMoto(t *testing.T) {
	acct := awstest.Start(t, awstest.Options{Bucket: "data", Objects: map[string]string{"a.txt": "hello", "dir/b.txt": "world"}})
	t.Run("S3", func(t *testing.T) { testMotoS3(t, acct) })
	t.Run("query protocol", func(t *testing.T) { testMotoQueryProtocol(t, acct) })
	t.Run("TLS", func(t *testing.T) { testMotoTLS(t, acct) })
	t.Run("boto3", func(t *testing.T) { testMotoBoto3(t, acct) })
}

// testMotoS3 sends the real S3 client's requests, signed with the
// placeholder key, through Parse, Describe, Allow and Resign to moto.
func testMotoS3(t *testing.T, acct *awstest.Account) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	narrow := &passport.Narrowing{Actions: []string{"s3:GetObject", "s3:ListBucket"}, Resources: []string{"arn:aws:s3:::data", "arn:aws:s3:::data/*"}}
	sess := mintSession(t, acct, "reader", narrow)
	rt := &resigner{narrow: narrow, sess: sess, next: http.DefaultTransport}
	agent := agentS3(acct.Endpoint, rt, nil)

	t.Run("ListObjects", func(t *testing.T) {
		out, err := agent.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("data")})
		if err != nil {
			t.Fatalf("ListObjects: %v", err)
		}
		var keys []string
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		if !slices.Equal(keys, []string{"a.txt", "dir/b.txt"}) {
			t.Errorf("ListObjects: %v", keys)
		}
	})

	t.Run("GetObject", func(t *testing.T) {
		for key, want := range map[string]string{"a.txt": "hello", "dir/b.txt": "world"} {
			out, err := agent.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String(key)})
			if err != nil {
				t.Fatalf("GetObject %s: %v", key, err)
			}
			b, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil || string(b) != want {
				t.Errorf("GetObject %s: %q, %v; want %q", key, b, err, want)
			}
		}
	})

	t.Run("HeadObject", func(t *testing.T) {
		out, err := agent.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("data"), Key: aws.String("a.txt")})
		if err != nil || aws.ToInt64(out.ContentLength) != 5 {
			t.Fatalf("HeadObject: %v", err)
		}
	})

	t.Run("PutObject is refused by the grant", func(t *testing.T) {
		_, err := agent.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("data"), Key: aws.String("new.txt"), Body: strings.NewReader("x")})
		var e *Error
		if !errors.As(err, &e) || e.Reason != reason.ScopeDenied || !strings.Contains(e.Detail, "s3:PutObject") {
			t.Fatalf("PutObject: %v, want scope_denied naming s3:PutObject", err)
		}
	})

	t.Run("PutObject is refused by AWS too", func(t *testing.T) {
		bypass := agentS3(acct.Endpoint, &resigner{narrow: narrow, sess: sess, skipAllow: true, next: http.DefaultTransport}, nil)
		_, err := bypass.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("data"), Key: aws.String("new.txt"), Body: strings.NewReader("x")})
		if apiCode(err) != "AccessDenied" {
			t.Fatalf("PutObject re-signed despite the grant: %v, want AccessDenied from the session policy", err)
		}
		// Signed with the same session, but allowed by the session policy:
		// the refusal above is the policy's, not the signature's.
		if _, err := bypass.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("a.txt")}); err != nil {
			t.Fatalf("GetObject through the same path: %v", err)
		}
	})

	t.Run("a wrong re-signature is refused", func(t *testing.T) {
		wrong := *sess
		wrong.SecretAccessKey = "not-" + sess.SecretAccessKey
		bad := agentS3(acct.Endpoint, &resigner{narrow: narrow, sess: &wrong, next: http.DefaultTransport}, nil)
		_, err := bad.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("a.txt")})
		if apiCode(err) != "SignatureDoesNotMatch" {
			t.Fatalf("GetObject signed with a wrong secret: %v, want SignatureDoesNotMatch", err)
		}
	})

	t.Run("ListObjectsV2", func(t *testing.T) {
		// A prefix without '/': moto 5.2.1 checks signatures against the
		// decoded query, so a query value that needs percent-encoding
		// (dir/ is sent as dir%2F) fails there even when the SDK signs
		// with real credentials and no proxy.
		out, err := agent.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("data"), Prefix: aws.String("dir")})
		if err != nil {
			t.Fatalf("ListObjectsV2: %v", err)
		}
		if len(out.Contents) != 1 || aws.ToString(out.Contents[0].Key) != "dir/b.txt" {
			t.Errorf("ListObjectsV2: %d objects", len(out.Contents))
		}
		if op := rt.ops[len(rt.ops)-1]; op.Name != "ListObjectsV2" {
			t.Errorf("described as %q", op.Name)
		}
	})
}

// testMotoQueryProtocol re-signs STS calls: a form body without
// x-amz-content-sha256, hashed by Resign.
func testMotoQueryProtocol(t *testing.T, acct *awstest.Account) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	narrow := &passport.Narrowing{Actions: []string{"sts:GetCallerIdentity"}}
	rt := &resigner{narrow: narrow, sess: mintSession(t, acct, "caller", narrow), next: http.DefaultTransport}
	client := sts.New(sts.Options{Region: acct.Region, BaseEndpoint: aws.String(acct.Endpoint), Credentials: placeholder,
		HTTPClient: &http.Client{Transport: rt}, RetryMaxAttempts: 1})
	out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	if arn := aws.ToString(out.Arn); !strings.HasSuffix(arn, ":assumed-role/stack-agents/stack-caller") {
		t.Errorf("GetCallerIdentity: %s, want the minted session", arn)
	}
	if s := rt.lastSigned(); s.PayloadHash != "" || s.Service != "sts" {
		t.Errorf("the SDK signed %+v", s)
	}
	_, err = client.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(acct.RoleARN), RoleSessionName: aws.String("x")})
	if !errors.Is(err, ErrNotGranted) {
		t.Errorf("AssumeRole: %v, want scope_denied", err)
	}
}

// testMotoTLS puts the re-signing where a sidecar has it: behind a TLS
// listener the agent's SDK talks to. Over TLS the SDK uploads with
// STREAMING-UNSIGNED-PAYLOAD-TRAILER, which is re-signed as is.
func testMotoTLS(t *testing.T, acct *awstest.Account) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	narrow := &passport.Narrowing{Actions: []string{"s3:PutObject", "s3:GetObject"}, Resources: []string{"arn:aws:s3:::data/*"}}
	rt := &resigner{narrow: narrow, sess: mintSession(t, acct, "writer", narrow), next: http.DefaultTransport}
	front := startFront(t, acct.Endpoint, rt)
	// The agent reaches "AWS" over TLS: the listener's client trusts it.
	agent := s3.New(s3.Options{
		Region: acct.Region, BaseEndpoint: aws.String(front.URL), UsePathStyle: true, Credentials: placeholder,
		HTTPClient: front.Client(), RetryMaxAttempts: 1, RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
	})
	body := strings.Repeat("streamed through the sidecar\n", 1000)
	if _, err := agent.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("data"), Key: aws.String("up.txt"), Body: strings.NewReader(body)}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if s := rt.lastSigned(); s.PayloadHash != StreamingUnsignedTrailer {
		t.Errorf("PutObject went with x-amz-content-sha256 %q, want %s", s.PayloadHash, StreamingUnsignedTrailer)
	}
	out, err := agent.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("up.txt")})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(got) != body {
		t.Errorf("GetObject: %d bytes, want the %d uploaded", len(got), len(body))
	}
	_, err = agent.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("data"), Key: aws.String("up.txt")})
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden || re.Response.Header.Get(reason.Header) != reason.ScopeDenied {
		t.Errorf("DeleteObject: %v, want the front's 403 scope_denied", err)
	}
}

// startFront serves what a sidecar serves the agent: TLS, then each
// request re-signed by rt and forwarded to the upstream endpoint, the
// refusals answered 403 with their reason.
func startFront(t testing.TB, endpoint string, rt *resigner) *httptest.Server {
	t.Helper()
	upstream, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host, out.Host = upstream.Scheme, upstream.Host, upstream.Host
		if err := rt.prepare(out); err != nil {
			var e *Error
			if errors.As(err, &e) {
				w.Header().Set(reason.Header, e.Reason)
			}
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		resp, err := rt.next.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(front.Close)
	return front
}

// testMotoBoto3: boto3, configured with the placeholder key, talks TLS to
// the re-signing front; its PutObject goes as
// STREAMING-UNSIGNED-PAYLOAD-TRAILER with Transfer-Encoding: chunked.
func testMotoBoto3(t *testing.T, acct *awstest.Account) {
	py := testenv.LookPath(t, "python3")
	if err := exec.Command(py, "-c", "import boto3").Run(); err != nil {
		testenv.Missing(t, "python package boto3 is not installed")
	}
	narrow := &passport.Narrowing{Actions: []string{"s3:PutObject", "s3:GetObject", "s3:ListBucket"}, Resources: []string{"arn:aws:s3:::data", "arn:aws:s3:::data/*"}}
	rt := &resigner{narrow: narrow, sess: mintSession(t, acct, "boto", narrow), next: http.DefaultTransport}
	front := startFront(t, acct.Endpoint, rt)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	const script = `
import sys, boto3, botocore.config, botocore.exceptions
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", verify=sys.argv[2],
    aws_access_key_id="stk_ph_aws", aws_secret_access_key="any-secret",
    config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3.put_object(Bucket="data", Key="boto.txt", Body=b"from boto3\n" * 1000)
print(s3.get_object(Bucket="data", Key="boto.txt")["Body"].read().count(b"from boto3"))
print(" ".join(sorted(o["Key"] for o in s3.list_objects(Bucket="data", Prefix="boto")["Contents"])))
try:
    s3.delete_object(Bucket="data", Key="boto.txt")
    print("deleted")
except botocore.exceptions.ClientError as e:
    print("refused", e.response["ResponseMetadata"]["HTTPHeaders"].get("x-stack-reason"))
`
	cmd := exec.Command(py, "-c", script, front.URL, ca)
	// Nothing from the host's AWS setup: only what the script says.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "AWS_") })
	cmd.Env = append(cmd.Env, "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull, "AWS_EC2_METADATA_DISABLED=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("boto3: %v\n%s", err, out)
	}
	if got, want := string(out), "1000\nboto.txt\nrefused scope_denied\n"; got != want {
		t.Errorf("boto3 printed\n%s\nwant\n%s", got, want)
	}
	var hashes []string
	for _, s := range rt.seen {
		hashes = append(hashes, s.PayloadHash)
	}
	if !slices.Contains(hashes, StreamingUnsignedTrailer) {
		t.Errorf("boto3 sent payload hashes %v, none %s", hashes, StreamingUnsignedTrailer)
	}
}
