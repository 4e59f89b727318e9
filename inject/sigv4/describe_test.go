package sigv4

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func acc(action, resource string) Access { return Access{Action: action, Resource: resource} }

const dataARN = "arn:aws:s3:::data"

// TestDescribeS3 describes the requests the real aws-sdk-go-v2 S3 client
// sends, to AWS's virtual-hosted endpoints and to a path-style custom one.
func TestDescribeS3(t *testing.T) {
	b, k := aws.String("data"), aws.String("dir/a.txt")
	pathStyle := func(o *s3.Options) { o.BaseEndpoint, o.UsePathStyle = aws.String("http://127.0.0.1:9000"), true }
	cases := []struct {
		name   string
		region string
		edit   func(*s3.Options)
		call   func(context.Context, *s3.Client) error
		want   string // operation name
		access []Access
	}{
		{name: "GetObject", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: k, Range: aws.String("bytes=0-9"), ResponseContentType: aws.String("text/plain")})
			return err
		}, want: "GetObject", access: []Access{acc("s3:GetObject", dataARN+"/dir/a.txt")}},
		{name: "GetObject path-style on a custom endpoint", edit: pathStyle, call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: k})
			return err
		}, want: "GetObject", access: []Access{acc("s3:GetObject", dataARN+"/dir/a.txt")}},
		{name: "GetObject of a version", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: k, VersionId: aws.String("v1")})
			return err
		}, want: "GetObject", access: []Access{acc("s3:GetObjectVersion", dataARN+"/dir/a.txt")}},
		{name: "GetObject, key with spaces and non-ASCII", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: aws.String("dir/a b+ü%.txt")})
			return err
		}, want: "GetObject", access: []Access{acc("s3:GetObject", dataARN+"/dir/a b+ü%.txt")}},
		{name: "GetObject, bucket with dots", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("my.data.bucket"), Key: k})
			return err
		}, want: "GetObject", access: []Access{acc("s3:GetObject", "arn:aws:s3:::my.data.bucket/dir/a.txt")}},
		{name: "GetObject in China", region: "cn-north-1", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: k})
			return err
		}, want: "GetObject", access: []Access{acc("s3:GetObject", "arn:aws-cn:s3:::data/dir/a.txt")}},
		{name: "HeadObject", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: k})
			return err
		}, want: "HeadObject", access: []Access{acc("s3:GetObject", dataARN+"/dir/a.txt")}},
		{name: "PutObject", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: k, Body: strings.NewReader("hi")})
			return err
		}, want: "PutObject", access: []Access{acc("s3:PutObject", dataARN+"/dir/a.txt")}},
		{name: "PutObject with tags and an ACL", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: k, Body: strings.NewReader("hi"), Tagging: aws.String("a=b"), ACL: s3types.ObjectCannedACLPublicRead})
			return err
		}, want: "PutObject", access: []Access{acc("s3:PutObject", dataARN+"/dir/a.txt"), acc("s3:PutObjectAcl", dataARN+"/dir/a.txt"), acc("s3:PutObjectTagging", dataARN+"/dir/a.txt")}},
		{name: "DeleteObject", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: k})
			return err
		}, want: "DeleteObject", access: []Access{acc("s3:DeleteObject", dataARN+"/dir/a.txt")}},
		{name: "DeleteObject of a version", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: k, VersionId: aws.String("v1")})
			return err
		}, want: "DeleteObject", access: []Access{acc("s3:DeleteObjectVersion", dataARN+"/dir/a.txt")}},
		{name: "DeleteObjects", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: b, Delete: &s3types.Delete{Objects: []s3types.ObjectIdentifier{
				{Key: aws.String("x/1")}, {Key: aws.String("x/2"), VersionId: aws.String("v9")}}}})
			return err
		}, want: "DeleteObjects", access: []Access{acc("s3:DeleteObject", dataARN+"/x/1"), acc("s3:DeleteObjectVersion", dataARN+"/x/2")}},
		{name: "CopyObject", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: b, Key: k, CopySource: aws.String("src/in%20put.txt")})
			return err
		}, want: "CopyObject", access: []Access{acc("s3:PutObject", dataARN+"/dir/a.txt"), acc("s3:GetObject", "arn:aws:s3:::src/in put.txt")}},
		{name: "CopyObject of a version", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: b, Key: k, CopySource: aws.String("/src/b.txt?versionId=v2")})
			return err
		}, want: "CopyObject", access: []Access{acc("s3:PutObject", dataARN+"/dir/a.txt"), acc("s3:GetObjectVersion", "arn:aws:s3:::src/b.txt")}},
		{name: "ListObjects", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: b, Prefix: aws.String("dir/"), Delimiter: aws.String("/")})
			return err
		}, want: "ListObjects", access: []Access{acc("s3:ListBucket", dataARN)}},
		{name: "ListObjectsV2 path-style", edit: pathStyle, call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: b, Prefix: aws.String("dir/"), StartAfter: aws.String("dir/0")})
			return err
		}, want: "ListObjectsV2", access: []Access{acc("s3:ListBucket", dataARN)}},
		{name: "ListBuckets", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
			return err
		}, want: "ListBuckets", access: []Access{acc("s3:ListAllMyBuckets", "*")}},
		{name: "ListBuckets path-style", edit: pathStyle, call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
			return err
		}, want: "ListBuckets", access: []Access{acc("s3:ListAllMyBuckets", "*")}},
		{name: "HeadBucket", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: b})
			return err
		}, want: "HeadBucket", access: []Access{acc("s3:ListBucket", dataARN)}},
		{name: "CreateBucket", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: b, CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraintUsWest2}})
			return err
		}, want: "CreateBucket", access: []Access{acc("s3:CreateBucket", dataARN)}},
		{name: "DeleteBucket", edit: pathStyle, call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: b})
			return err
		}, want: "DeleteBucket", access: []Access{acc("s3:DeleteBucket", dataARN)}},
		{name: "GetObjectTagging", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: b, Key: k})
			return err
		}, want: "GetObjectTagging", access: []Access{acc("s3:GetObjectTagging", dataARN+"/dir/a.txt")}},
		{name: "PutObjectTagging", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: b, Key: k, Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}}})
			return err
		}, want: "PutObjectTagging", access: []Access{acc("s3:PutObjectTagging", dataARN+"/dir/a.txt")}},
		{name: "CreateMultipartUpload", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: k})
			return err
		}, want: "CreateMultipartUpload", access: []Access{acc("s3:PutObject", dataARN+"/dir/a.txt")}},
		{name: "UploadPart", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: b, Key: k, UploadId: aws.String("u1"), PartNumber: aws.Int32(1), Body: strings.NewReader("part")})
			return err
		}, want: "UploadPart", access: []Access{acc("s3:PutObject", dataARN+"/dir/a.txt")}},
		{name: "UploadPartCopy", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: b, Key: k, UploadId: aws.String("u1"), PartNumber: aws.Int32(2), CopySource: aws.String("src/big")})
			return err
		}, want: "UploadPartCopy", access: []Access{acc("s3:PutObject", dataARN+"/dir/a.txt"), acc("s3:GetObject", "arn:aws:s3:::src/big")}},
		{name: "CompleteMultipartUpload", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: b, Key: k, UploadId: aws.String("u1"),
				MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{{ETag: aws.String(`"e"`), PartNumber: aws.Int32(1)}}}})
			return err
		}, want: "CompleteMultipartUpload", access: []Access{acc("s3:PutObject", dataARN+"/dir/a.txt")}},
		{name: "AbortMultipartUpload", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: b, Key: k, UploadId: aws.String("u1")})
			return err
		}, want: "AbortMultipartUpload", access: []Access{acc("s3:AbortMultipartUpload", dataARN+"/dir/a.txt")}},
		{name: "ListParts", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: b, Key: k, UploadId: aws.String("u1"), MaxParts: aws.Int32(10)})
			return err
		}, want: "ListParts", access: []Access{acc("s3:ListMultipartUploadParts", dataARN+"/dir/a.txt")}},
		{name: "ListMultipartUploads", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: b, Prefix: aws.String("dir/")})
			return err
		}, want: "ListMultipartUploads", access: []Access{acc("s3:ListBucketMultipartUploads", dataARN)}},
		{name: "ListObjectVersions", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: b})
			return err
		}, want: "ListObjectVersions", access: []Access{acc("s3:ListBucketVersions", dataARN)}},
		{name: "GetBucketPolicy", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: b})
			return err
		}, want: "GetBucketPolicy", access: []Access{acc("s3:GetBucketPolicy", dataARN)}},
		{name: "PutBucketPolicy", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: b, Policy: aws.String("{}")})
			return err
		}, want: "PutBucketPolicy", access: []Access{acc("s3:PutBucketPolicy", dataARN)}},
		{name: "GetBucketLocation", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: b})
			return err
		}, want: "GetBucketLocation", access: []Access{acc("s3:GetBucketLocation", dataARN)}},
		{name: "DeleteBucketTagging needs PutBucketTagging", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.DeleteBucketTagging(ctx, &s3.DeleteBucketTaggingInput{Bucket: b})
			return err
		}, want: "DeleteBucketTagging", access: []Access{acc("s3:PutBucketTagging", dataARN)}},
		{name: "GetObjectAttributes", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetObjectAttributes(ctx, &s3.GetObjectAttributesInput{Bucket: b, Key: k, ObjectAttributes: []s3types.ObjectAttributes{s3types.ObjectAttributesEtag}})
			return err
		}, want: "GetObjectAttributes", access: []Access{acc("s3:GetObjectAttributes", dataARN+"/dir/a.txt")}},
		// Operations Describe does not map: only a grant of s3:* allows them.
		{name: "GetBucketInventoryConfiguration is unknown", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetBucketInventoryConfiguration(ctx, &s3.GetBucketInventoryConfigurationInput{Bucket: b, Id: aws.String("i")})
			return err
		}},
		{name: "an access point is unknown", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("arn:aws:s3:us-west-2:123456789012:accesspoint/ap"), Key: k})
			return err
		}},
		{name: "a copy from an access point is unknown", call: func(ctx context.Context, c *s3.Client) error {
			_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: b, Key: k,
				CopySource: aws.String("arn:aws:s3:us-west-2:123456789012:accesspoint/ap/object/x")})
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			region := c.region
			if region == "" {
				region = "us-west-2"
			}
			req := s3Capture(t, region, c.edit, c.call)
			s, ok, err := Parse(req)
			if err != nil || !ok {
				t.Fatalf("Parse: %v, %v", ok, err)
			}
			op, err := Describe(req, s)
			if err != nil {
				t.Fatalf("Describe %s %s: %v", req.Method, req.URL, err)
			}
			if op.Service != "s3" {
				t.Errorf("service %q", op.Service)
			}
			if c.want == "" {
				if op.Known() {
					t.Errorf("Describe %s %s = %+v, want an unknown operation", req.Method, req.URL, op)
				}
				return
			}
			if op.Name != c.want || !slices.Equal(op.Access, c.access) {
				t.Errorf("Describe %s %s:\n got %s %v\nwant %s %v", req.Method, req.URL, op.Name, op.Access, c.want, c.access)
			}
		})
	}
}

// signedBy signs req with the placeholder key as an SDK would, for the
// protocols whose clients are not dependencies here.
func signedBy(t testing.TB, req *http.Request, service, region string, body string) *http.Request {
	t.Helper()
	h := sha256Hex([]byte(body))
	creds := aws.Credentials{AccessKeyID: "stk_ph_aws", SecretAccessKey: "x"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, h, service, region, time.Now()); err != nil {
		t.Fatal(err)
	}
	return withBody(req, []byte(body))
}

func newRequest(t testing.TB, method, u, body string, header map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req
}

// TestDescribeRPC describes query, JSON and RPCv2 CBOR requests: with the
// real STS and KMS clients, and by hand for the others.
func TestDescribeRPC(t *testing.T) {
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
	capture := func(call func(http.Client) error) *http.Request {
		rec := &recorder{}
		_ = call(http.Client{Transport: rec})
		return rec.last(t)
	}
	cases := []struct {
		name    string
		req     func() *http.Request
		want    Access // zero: unknown
		wantErr string
	}{
		{name: "sts GetCallerIdentity (query, form body)", req: func() *http.Request {
			return capture(func(c http.Client) error {
				_, err := sts.New(sts.Options{Region: "us-east-1", Credentials: placeholder, HTTPClient: &c}).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
				return err
			})
		}, want: acc("sts:GetCallerIdentity", "*")},
		{name: "kms Decrypt (JSON)", req: func() *http.Request {
			return capture(func(c http.Client) error {
				_, err := kms.New(kms.Options{Region: "eu-west-1", Credentials: placeholder, HTTPClient: &c}).Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: []byte("x")})
				return err
			})
		}, want: acc("kms:Decrypt", "*")},
		{name: "dynamodb GetItem (JSON)", req: func() *http.Request {
			r := newRequest(t, "POST", "https://dynamodb.us-east-1.amazonaws.com/", `{}`, map[string]string{"X-Amz-Target": "DynamoDB_20120810.GetItem", "Content-Type": "application/x-amz-json-1.0"})
			return signedBy(t, r, "dynamodb", "us-east-1", `{}`)
		}, want: acc("dynamodb:GetItem", "*")},
		{name: "sqs SendMessage (query string)", req: func() *http.Request {
			r := newRequest(t, "GET", "https://sqs.us-east-1.amazonaws.com/?Action=SendMessage&QueueUrl=q&MessageBody=hi", "", nil)
			return signedBy(t, r, "sqs", "us-east-1", "")
		}, want: acc("sqs:SendMessage", "*")},
		{name: "sqs SendMessage (JSON)", req: func() *http.Request {
			r := newRequest(t, "POST", "https://sqs.us-east-1.amazonaws.com/", `{}`, map[string]string{"X-Amz-Target": "AmazonSQS.SendMessage", "Content-Type": "application/x-amz-json-1.0"})
			return signedBy(t, r, "sqs", "us-east-1", `{}`)
		}, want: acc("sqs:SendMessage", "*")},
		// Action and X-Amz-Target name the operation only where the query
		// and JSON protocols put them; elsewhere AWS routes the request by
		// its path, and they name nothing.
		{name: "Action off the root path is unknown", req: func() *http.Request {
			r := newRequest(t, "GET", "https://sqs.us-east-1.amazonaws.com/123456789012/q?Action=SendMessage&MessageBody=hi", "", nil)
			return signedBy(t, r, "sqs", "us-east-1", "")
		}},
		{name: "Action in the query of a REST API is unknown", req: func() *http.Request {
			r := newRequest(t, "POST", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations?Action=GetFunction", "{}", nil)
			return signedBy(t, r, "lambda", "us-east-1", "{}")
		}},
		{name: "Action in a form off the root path is unknown", req: func() *http.Request {
			r := newRequest(t, "POST", "https://iam.amazonaws.com/users", "Action=GetUser", form)
			return signedBy(t, r, "iam", "us-east-1", "Action=GetUser")
		}},
		{name: "X-Amz-Target on a REST path is unknown", req: func() *http.Request {
			r := newRequest(t, "POST", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations", "{}", map[string]string{"X-Amz-Target": "AWSLambda.GetFunction"})
			return signedBy(t, r, "lambda", "us-east-1", "{}")
		}},
		{name: "X-Amz-Target on a GET is unknown", req: func() *http.Request {
			r := newRequest(t, "GET", "https://dynamodb.us-east-1.amazonaws.com/", "", map[string]string{"X-Amz-Target": "DynamoDB_20120810.GetItem"})
			return signedBy(t, r, "dynamodb", "us-east-1", "")
		}},
		{name: "X-Amz-Target on an RPCv2 CBOR path is unknown", req: func() *http.Request {
			r := newRequest(t, "POST", "https://monitoring.us-east-1.amazonaws.com/service/GraniteServiceVersion20100801/operation/PutMetricData", "\xa0",
				map[string]string{"Smithy-Protocol": "rpc-v2-cbor", "Content-Type": "application/cbor", "X-Amz-Target": "GraniteServiceVersion20100801.ListMetrics"})
			return signedBy(t, r, "monitoring", "us-east-1", "\xa0")
		}},
		{name: "an escaped slash is not the root path", req: func() *http.Request {
			r := newRequest(t, "POST", "https://iam.amazonaws.com/%2F", "Action=GetUser", form)
			return signedBy(t, r, "iam", "us-east-1", "Action=GetUser")
		}},
		{name: "cloudwatch PutMetricData (signing name monitoring, RPCv2 CBOR)", req: func() *http.Request {
			r := newRequest(t, "POST", "https://monitoring.us-east-1.amazonaws.com/service/GraniteServiceVersion20100801/operation/PutMetricData", "\xa0",
				map[string]string{"Smithy-Protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"})
			return signedBy(t, r, "monitoring", "us-east-1", "\xa0")
		}, want: acc("cloudwatch:PutMetricData", "*")},
		{name: "ses (signing name email)", req: func() *http.Request {
			r := newRequest(t, "POST", "https://email.us-east-1.amazonaws.com/", "Action=SendEmail&Version=2010-12-01", form)
			return signedBy(t, r, "email", "us-east-1", "Action=SendEmail&Version=2010-12-01")
		}, want: acc("ses:SendEmail", "*")},
		{name: "lambda REST is unknown", req: func() *http.Request {
			r := newRequest(t, "POST", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations", "{}", nil)
			return signedBy(t, r, "lambda", "us-east-1", "{}")
		}},
		{name: "compressed form is unknown", req: func() *http.Request {
			h := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"}
			r := newRequest(t, "POST", "https://monitoring.us-east-1.amazonaws.com/?Action=ListMetrics", "\x1f\x8b", h)
			return signedBy(t, r, "monitoring", "us-east-1", "\x1f\x8b")
		}},
		{name: "query and body disagree", req: func() *http.Request {
			r := newRequest(t, "POST", "https://sts.amazonaws.com/?Action=GetCallerIdentity", "Action=AssumeRole&Version=2011-06-15", form)
			return signedBy(t, r, "sts", "us-east-1", "Action=AssumeRole&Version=2011-06-15")
		}, wantErr: "names two operations"},
		{name: "two actions in the body", req: func() *http.Request {
			r := newRequest(t, "POST", "https://iam.amazonaws.com/", "Action=GetUser&Action=DeleteUser", form)
			return signedBy(t, r, "iam", "us-east-1", "Action=GetUser&Action=DeleteUser")
		}, wantErr: "names two operations"},
		{name: "target and action disagree", req: func() *http.Request {
			r := newRequest(t, "POST", "https://sqs.us-east-1.amazonaws.com/?Action=ListQueues", "{}", map[string]string{"X-Amz-Target": "AmazonSQS.DeleteQueue"})
			return signedBy(t, r, "sqs", "us-east-1", "{}")
		}, wantErr: "names two operations"},
		{name: "action spelled otherwise", req: func() *http.Request {
			r := newRequest(t, "POST", "https://iam.amazonaws.com/?action=DeleteUser", "Action=GetUser", form)
			return signedBy(t, r, "iam", "us-east-1", "Action=GetUser")
		}, wantErr: "not Action"},
		{name: "malformed operation", req: func() *http.Request {
			r := newRequest(t, "GET", "https://sqs.us-east-1.amazonaws.com/?Action=Send%2FMessage", "", nil)
			return signedBy(t, r, "sqs", "us-east-1", "")
		}, wantErr: "malformed operation"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := c.req()
			s, ok, err := Parse(req)
			if err != nil || !ok {
				t.Fatalf("Parse: %v, %v", ok, err)
			}
			var body []byte
			if req.Body != nil {
				body, _ = readBody(req)
				body = append([]byte(nil), body...)
			}
			op, err := Describe(req, s)
			if c.wantErr != "" {
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Describe: %v, want ErrUnsupported with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Describe: %v", err)
			}
			if c.want == (Access{}) {
				if op.Known() {
					t.Errorf("Describe = %+v, want unknown", op)
				}
			} else if len(op.Access) != 1 || op.Access[0] != c.want {
				t.Errorf("Describe = %+v, want %v", op, c.want)
			}
			// The body is still there to forward.
			if got, _ := readBody(req); string(got) != string(body) {
				t.Errorf("body after Describe %q, want %q", got, body)
			}
		})
	}
}

// TestDescribeS3Hosts reads buckets and keys from hosts and paths.
func TestDescribeS3Hosts(t *testing.T) {
	cases := []struct {
		url, want string // want: the GetObject resource, "" for unknown
	}{
		{"https://data.s3.amazonaws.com/k", dataARN + "/k"},
		{"https://data.s3.us-west-2.amazonaws.com/a/b", dataARN + "/a/b"},
		{"https://data.s3.dualstack.us-west-2.amazonaws.com/k", dataARN + "/k"},
		{"https://data.s3-fips.us-gov-west-1.amazonaws.com/k", dataARN + "/k"},
		{"https://data.s3-us-west-2.amazonaws.com/k", dataARN + "/k"},
		{"https://s3-fips.s3.amazonaws.com/k", "arn:aws:s3:::s3-fips/k"},
		{"https://a.b.c.s3.eu-west-1.amazonaws.com/k", "arn:aws:s3:::a.b.c/k"},
		{"https://s3.us-west-2.amazonaws.com/data/k", dataARN + "/k"},
		{"https://s3.amazonaws.com/data/k", dataARN + "/k"},
		{"https://data.s3.cn-north-1.amazonaws.com.cn/k", dataARN + "/k"},
		{"http://localhost:4566/data/k", dataARN + "/k"},
		{"http://[::1]:9000/data/k/", dataARN + "/k/"},
		{"https://minio.example.com/data/k", dataARN + "/k"},
		{"https://ap-123456789012.s3-accesspoint.us-west-2.amazonaws.com/k", ""},
		{"https://123456789012.s3-control.us-west-2.amazonaws.com/v20180820/bucket/b", ""},
		{"https://ol-123456789012.s3-object-lambda.us-west-2.amazonaws.com/k", ""},
		{"https://b--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com/k", ""},
		{"https://sqs.us-east-1.amazonaws.com/k", ""},
		{"http://127.0.0.1:9000/data/%2E%2E/k%2Fx", dataARN + "/../k/x"},
		{"http://127.0.0.1:9000/data%2Fx/k", ""},
		{"http://127.0.0.1:9000/da%2Ata/k", ""},
		{"https://da*ta.s3.amazonaws.com/k", ""},
	}
	for _, c := range cases {
		r := newRequest(t, "GET", c.url, "", nil)
		r = signedBy(t, r, "s3", "us-west-2", "")
		s, _, err := Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		op, err := Describe(r, s)
		if err != nil {
			t.Errorf("Describe %s: %v", c.url, err)
			continue
		}
		switch {
		case c.want == "" && op.Known():
			t.Errorf("Describe %s = %v, want unknown", c.url, op.Access)
		case c.want != "" && (len(op.Access) != 1 || op.Access[0] != acc("s3:GetObject", c.want)):
			t.Errorf("Describe %s = %v, want s3:GetObject on %s", c.url, op.Access, c.want)
		}
	}
}

// TestDescribeS3Queries: a query parameter Describe does not know makes
// the operation unknown rather than something it is not.
func TestDescribeS3Queries(t *testing.T) {
	cases := []struct {
		method, query string
		want          string // action on the object or bucket; "" for unknown
	}{
		{"GET", "", "s3:ListBucket"},
		{"GET", "list-type=2&prefix=a&x-id=ListObjectsV2", "s3:ListBucket"},
		{"GET", "acl", "s3:GetBucketAcl"},
		{"GET", "acl&tagging", ""},
		{"GET", "inventory&id=1", ""},
		{"GET", "prefix=a&versionId=1", ""},
		{"GET", "versions&key-marker=a", "s3:ListBucketVersions"},
		{"PUT", "", "s3:CreateBucket"},
		{"PUT", "policy", "s3:PutBucketPolicy"},
		{"PUT", "replication", ""},
		{"POST", "", ""},
		{"PATCH", "", ""},
	}
	for _, c := range cases {
		u := "http://127.0.0.1:9000/data"
		if c.query != "" {
			u += "?" + c.query
		}
		r := signedBy(t, newRequest(t, c.method, u, "", nil), "s3", "us-east-1", "")
		s, _, _ := Parse(r)
		op, err := Describe(r, s)
		if err != nil {
			t.Errorf("%s ?%s: %v", c.method, c.query, err)
			continue
		}
		got := ""
		if op.Known() {
			got = op.Access[0].Action
		}
		if got != c.want {
			t.Errorf("%s /data?%s = %q (%v), want %q", c.method, c.query, got, op.Access, c.want)
		}
	}
	objects := []struct {
		method, query string
		header        map[string]string
		want          string
	}{
		{"GET", "torrent", nil, ""},
		{"PUT", "x-amz-acl=public-read", nil, ""},
		{"PUT", "", map[string]string{"X-Amz-Copy-Source": ""}, "error"},
		{"GET", "response-content-type=text%2Fplain&partNumber=1", nil, "s3:GetObject"},
		{"PUT", "uploadId=u&partNumber=1", nil, "s3:PutObject"},
		{"PUT", "uploadId=u&partNumber=1&versionId=v", nil, ""},
		{"POST", "select&select-type=2", nil, "s3:GetObject"},
		{"PUT", "", map[string]string{"X-Amz-Copy-Source": "/src/k?versionId=v&x=1"}, "error"},
		{"PUT", "", map[string]string{"X-Amz-Copy-Source": "nobucket"}, "error"},
	}
	for _, c := range objects {
		r := signedBy(t, newRequest(t, c.method, "http://127.0.0.1:9000/data/k?"+c.query, "", c.header), "s3", "us-east-1", "")
		s, _, _ := Parse(r)
		op, err := Describe(r, s)
		got := ""
		switch {
		case err != nil:
			got = "error"
		case op.Known():
			got = op.Access[0].Action
		}
		if got != c.want {
			t.Errorf("%s /data/k?%s %v = %q (%v, %v), want %q", c.method, c.query, c.header, got, op.Access, err, c.want)
		}
	}
}

// TestDescribeDeleteObjectsChunked: DeleteObjects over TLS may come
// aws-chunked with a trailing checksum; its keys are read all the same.
func TestDescribeDeleteObjectsChunked(t *testing.T) {
	body := "<Delete><Object><Key>a</Key></Object><Object><Key>b/c</Key></Object></Delete>"
	chunked := "10\r\n" + body[:16] + "\r\n" + strconv.FormatInt(int64(len(body)-16), 16) + "\r\n" + body[16:] + "\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
	r := newRequest(t, "POST", "https://data.s3.amazonaws.com/?delete", chunked, map[string]string{
		"Content-Encoding": "aws-chunked", "X-Amz-Content-Sha256": StreamingUnsignedTrailer, "X-Amz-Trailer": "x-amz-checksum-crc32",
	})
	r = signedBy(t, r, "s3", "us-east-1", chunked)
	s, _, _ := Parse(r)
	op, err := Describe(r, s)
	if err != nil {
		t.Fatal(err)
	}
	want := []Access{acc("s3:DeleteObject", dataARN+"/a"), acc("s3:DeleteObject", dataARN+"/b/c")}
	if !slices.Equal(op.Access, want) {
		t.Errorf("Describe = %v, want %v", op.Access, want)
	}
	for _, bad := range []string{"zz\r\n", "5;chunk-signature=00\r\nhello\r\n0\r\n\r\n", "ff\r\nshort\r\n"} {
		r := signedBy(t, newRequest(t, "POST", "https://data.s3.amazonaws.com/?delete", bad, map[string]string{"Content-Encoding": "aws-chunked"}), "s3", "us-east-1", bad)
		s, _, _ := Parse(r)
		if _, err := Describe(r, s); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Describe of aws-chunked %q: %v, want ErrUnsupported", bad, err)
		}
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
