package inject

import (
	"net/http"

	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/reason"
)

// awsRequest is an AWS request the agent signed with a placeholder key,
// checked against its grant and waiting for its session credentials.
type awsRequest struct {
	req  *http.Request
	cred Credential
}

// prepareAWS finds the agent's SigV4 signature and checks the operation
// it signs against the grant.
func prepareAWS(req *http.Request, c Credential, g Grant) (*awsRequest, error) {
	return nil, &DeniedError{Reason: reason.SigV4Unsupported, Credential: c.Name, Detail: "AWS re-signing is not built"}
}

func (a *awsRequest) resign(req *http.Request, tok mint.Token) error { return nil }

func (a *awsRequest) operation() string { return "" }
