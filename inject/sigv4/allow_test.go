package sigv4

import (
	"errors"
	"strings"
	"testing"

	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

func TestAllow(t *testing.T) {
	get := Operation{Service: "s3", Name: "GetObject", Access: []Access{acc("s3:GetObject", dataARN+"/dir/a.txt")}}
	put := Operation{Service: "s3", Name: "PutObject", Access: []Access{acc("s3:PutObject", dataARN+"/dir/a.txt")}}
	copyOp := Operation{Service: "s3", Name: "CopyObject", Access: []Access{acc("s3:PutObject", dataARN+"/b"), acc("s3:GetObject", "arn:aws:s3:::secret/k")}}
	list := Operation{Service: "s3", Name: "ListObjects", Access: []Access{acc("s3:ListBucket", dataARN)}}
	who := Operation{Service: "sts", Name: "GetCallerIdentity", Access: []Access{acc("sts:GetCallerIdentity", "*")}}
	lambda := Operation{Service: "lambda", Request: "POST /2015-03-31/functions/f/invocations"}

	readData := &passport.Narrowing{Actions: []string{"s3:GetObject", "s3:ListBucket"}, Resources: []string{dataARN, dataARN + "/*"}}
	cases := []struct {
		name    string
		n       *passport.Narrowing
		region  string
		op      Operation
		wantErr string // "" allows
	}{
		{name: "granted", n: readData, op: get},
		{name: "bucket ARN", n: readData, op: list},
		{name: "action not granted", n: readData, op: put, wantErr: "action s3:PutObject (PutObject) is not granted (the grant allows s3:GetObject, s3:ListBucket)"},
		{name: "resource not granted", n: readData, op: Operation{Service: "s3", Name: "GetObject", Access: []Access{acc("s3:GetObject", "arn:aws:s3:::other/k")}},
			wantErr: "s3:GetObject on arn:aws:s3:::other/k is not granted"},
		{name: "copy: every access is checked", n: &passport.Narrowing{Actions: []string{"s3:*"}, Resources: []string{dataARN + "/*"}}, op: copyOp,
			wantErr: "s3:GetObject on arn:aws:s3:::secret/k"},
		{name: "actions compare case-insensitively", n: &passport.Narrowing{Actions: []string{"S3:getobject"}}, op: get},
		{name: "action wildcards", n: &passport.Narrowing{Actions: []string{"s3:Get*"}}, op: get},
		{name: "action wildcard that does not match", n: &passport.Narrowing{Actions: []string{"s3:List*"}}, op: get, wantErr: "s3:GetObject"},
		{name: "resource wildcards", n: &passport.Narrowing{Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::data/dir/?.txt"}}, op: get},
		{name: "resources compare case-sensitively", n: &passport.Narrowing{Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::DATA/*"}}, op: get, wantErr: "not granted"},
		{name: "no resources named: any", n: &passport.Narrowing{Actions: []string{"s3:GetObject"}}, op: get},
		{name: "region granted", n: &passport.Narrowing{Actions: []string{"s3:*"}, Regions: []string{"eu-west-1", "us-east-1"}}, op: get},
		{name: "region not granted", n: &passport.Narrowing{Actions: []string{"s3:*"}, Regions: []string{"eu-west-1"}}, region: "us-west-2", op: get,
			wantErr: "region us-west-2 is not granted (the grant allows eu-west-1)"},
		{name: "resource * needs a grant of any resource", n: &passport.Narrowing{Actions: []string{"sts:GetCallerIdentity"}, Resources: []string{dataARN}}, op: who,
			wantErr: "sts:GetCallerIdentity on * is not granted"},
		{name: "resource * under any resource", n: &passport.Narrowing{Actions: []string{"sts:GetCallerIdentity"}, Resources: []string{"*"}}, op: who},
		{name: "unknown operation needs the whole service", n: &passport.Narrowing{Actions: []string{"lambda:InvokeFunction"}}, op: lambda,
			wantErr: "lambda request POST /2015-03-31/functions/f/invocations maps to no IAM action STACK knows: only a grant of lambda:* on any resource allows it"},
		{name: "unknown operation under service:*", n: &passport.Narrowing{Actions: []string{"Lambda:*"}}, op: lambda},
		{name: "unknown operation under *", n: &passport.Narrowing{Actions: []string{"*"}}, op: lambda},
		{name: "unknown operation: a prefix wildcard is not the service", n: &passport.Narrowing{Actions: []string{"lambda:Invoke*"}}, op: lambda, wantErr: "lambda:*"},
		{name: "unknown operation with resources named", n: &passport.Narrowing{Actions: []string{"lambda:*"}, Resources: []string{"arn:aws:lambda:*"}}, op: lambda, wantErr: "any resource"},
		{name: "nil narrowing allows nothing", n: nil, op: get, wantErr: "names no AWS actions"},
		{name: "no actions allows nothing", n: &passport.Narrowing{Resources: []string{"*"}}, op: get, wantErr: "names no AWS actions"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			region := c.region
			if region == "" {
				region = "us-east-1"
			}
			err := Allow(c.n, region, c.op)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Allow: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Reason != reason.ScopeDenied || !errors.Is(err, ErrNotGranted) || !strings.Contains(e.Detail, c.wantErr) {
				t.Fatalf("Allow: %v, want scope_denied with %q", err, c.wantErr)
			}
		})
	}
}
