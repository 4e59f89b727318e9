package sigv4_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/inject/sigv4"
	"github.com/stackctl/stack/passport"
)

// An agent's SDK signed a GetObject with the placeholder key; the grant
// lets it read one bucket. The sidecar checks the request and re-signs it
// with the session minted for that grant.
func Example() {
	req, _ := http.NewRequest("GET", "https://data.s3.us-west-2.amazonaws.com/reports/q3.csv", nil)
	const emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	req.Header.Set("X-Amz-Content-Sha256", emptyHash)
	agentKey := aws.Credentials{AccessKeyID: "stk_ph_aws", SecretAccessKey: "anything"}
	_ = v4.NewSigner().SignHTTP(context.Background(), agentKey, req, emptyHash, "s3", "us-west-2", time.Now())

	grant := &passport.Narrowing{Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::data/reports/*"}}
	session := &mint.AWSSession{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "secret", SessionToken: "token"}

	s, ok, err := sigv4.Parse(req)
	fmt.Println(s.KeyID, s.Region, s.Service, ok, err)
	op, _ := sigv4.Describe(req, s)
	fmt.Println(op.Access)
	fmt.Println(sigv4.Allow(grant, s.Region, op))
	if err := sigv4.Resign(req, s, session, time.Now()); err != nil {
		fmt.Println(err)
	}
	s, _, _ = sigv4.Parse(req)
	fmt.Println(s.KeyID, req.Header.Get("X-Amz-Security-Token"))

	put, _ := http.NewRequest("PUT", "https://data.s3.us-west-2.amazonaws.com/reports/q3.csv", nil)
	_ = v4.NewSigner().SignHTTP(context.Background(), agentKey, put, emptyHash, "s3", "us-west-2", time.Now())
	s, _, _ = sigv4.Parse(put)
	op, _ = sigv4.Describe(put, s)
	fmt.Println(sigv4.Allow(grant, s.Region, op))
	// Output:
	// stk_ph_aws us-west-2 s3 true <nil>
	// [{s3:GetObject arn:aws:s3:::data/reports/q3.csv}]
	// <nil>
	// ASIAEXAMPLE token
	// sigv4: scope_denied: action s3:PutObject (PutObject) is not granted (the grant allows s3:GetObject)
}
