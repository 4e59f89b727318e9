package inject

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/inject/sigv4"
	"github.com/stackctl/stack/reason"
)

// awsRequest is an AWS request the agent signed with a placeholder as its
// access key id, checked against its grant and waiting for the session
// credentials that sign it again.
type awsRequest struct {
	cred   Credential
	signed sigv4.Signed
	op     sigv4.Operation
}

// prepareAWS finds the agent's SigV4 signature, checks that it can be
// re-signed and checks the operation it signs against the grant, before
// anything is minted.
func prepareAWS(req *http.Request, c Credential, g Grant) (*awsRequest, error) {
	s, ok, err := sigv4.Parse(req)
	if err != nil {
		return nil, awsDenial(c, err)
	}
	ph := Placeholder(c.Name)
	if !ok || s.KeyID != ph {
		return nil, &DeniedError{Reason: reason.SigV4Unsupported, Credential: c.Name,
			Detail: fmt.Sprintf("credential %q is an AWS credential: sign the request with AWS SigV4 and %s as the access key id (AWS_ACCESS_KEY_ID=%s)", c.Name, ph, ph)}
	}
	// What Resign would refuse (a presigned URL, a signed aws-chunked
	// body, an unknown payload hash) is refused before a mint.
	if err := sigv4.Check(req, s); err != nil {
		return nil, awsDenial(c, err)
	}
	op, err := sigv4.Describe(req, s)
	if err != nil {
		return nil, awsDenial(c, err)
	}
	if err := sigv4.Allow(g.Narrow, s.Region, op); err != nil {
		return nil, awsDenial(c, err)
	}
	return &awsRequest{cred: c, signed: s, op: op}, nil
}

// resign signs the request again with the minted session.
func (a *awsRequest) resign(req *http.Request, tok mint.Token) error {
	if tok.AWS == nil {
		return &DeniedError{Reason: reason.CredentialUnavailable, Credential: a.cred.Name,
			Detail: fmt.Sprintf("credential %q has no AWS session to sign with", a.cred.Name)}
	}
	if err := sigv4.Resign(req, a.signed, tok.AWS, time.Now()); err != nil {
		return awsDenial(a.cred, err)
	}
	return nil
}

// operation names what the request does, for the audit record.
func (a *awsRequest) operation() string {
	if a.op.Name != "" {
		return a.op.Service + ":" + a.op.Name
	}
	return a.op.Service + " " + a.op.Request
}

// awsDenial turns a sigv4 refusal into the injector's.
func awsDenial(c Credential, err error) error {
	var se *sigv4.Error
	if errors.As(err, &se) {
		return &DeniedError{Reason: se.Reason, Credential: c.Name, Detail: se.Detail}
	}
	return &DeniedError{Reason: reason.SigV4Unsupported, Credential: c.Name, Detail: "the AWS request could not be re-signed", Err: err}
}
