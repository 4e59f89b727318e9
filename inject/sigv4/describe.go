package sigv4

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// Access is one IAM action on one resource that a request needs.
type Access struct {
	// Action is service:Action as IAM names it, such as s3:GetObject.
	Action string
	// Resource is an ARN, or "*" when the request's resource is not
	// worked out (every non-S3 request).
	Resource string
}

// Operation is what an AWS request does, as IAM authorizes it.
type Operation struct {
	// Service is the IAM service prefix, such as s3 or dynamodb.
	Service string
	// Name is the API operation, such as GetObject; empty when unknown.
	Name string
	// Access lists every action on every resource the request needs (a
	// CopyObject needs s3:PutObject on its target and s3:GetObject on its
	// source). Empty when the operation is unknown: Allow then lets the
	// request through only under a grant of the whole service.
	Access []Access
	// Request is the method and path, to name an unknown operation in a
	// refusal.
	Request string
}

// Known reports whether the operation was worked out.
func (o Operation) Known() bool { return len(o.Access) > 0 }

// iamPrefix maps the signing names that differ from their service's IAM
// prefix.
var iamPrefix = map[string]string{
	"monitoring": "cloudwatch",
	"email":      "ses",
}

// Describe works out the IAM actions and resources req needs, from the
// request as it will be forwarded:
//
//   - S3 (signing name s3): the REST API, with path-style and
//     virtual-hosted-style buckets; resources are bucket and object ARNs.
//     Custom endpoints (anything but *.amazonaws.com) are read
//     path-style.
//   - query protocol (STS, IAM, SNS, EC2...): Action in the query
//     string or the form body of a request to the root path "/", as
//     service:Action on "*".
//   - JSON protocol (DynamoDB, KMS, SQS, CloudWatch Logs...):
//     X-Amz-Target Prefix.Operation on a POST to "/", as
//     service:Operation on "*"; and Smithy RPCv2 CBOR
//     (/service/S/operation/Op).
//
// Anything else (the REST APIs of other services, an Action or
// X-Amz-Target anywhere else, S3 access points, an S3 query it does not
// know) is an unknown operation (Operation.Known
// false), not an error. The error, an *Error, is for a request that names
// its operation ambiguously (two different actions) or whose body cannot
// be read. Describe may read a form or XML body (at most MaxBody bytes)
// and puts it back.
func Describe(req *http.Request, s Signed) (Operation, error) {
	service := s.Service
	if p, ok := iamPrefix[service]; ok {
		service = p
	}
	op := Operation{Service: service, Request: req.Method + " " + req.URL.EscapedPath()}
	if len(op.Request) > 200 {
		op.Request = op.Request[:200] + "..."
	}
	if s.Service == "s3" {
		return describeS3(req, s, op)
	}
	name, err := rpcName(req)
	if err != nil || name == "" {
		return op, err
	}
	op.Name = name
	op.Access = []Access{{Action: service + ":" + name, Resource: "*"}}
	return op, nil
}

// rpcName is the operation a query, JSON or RPCv2 CBOR request names;
// "" when it names none. Every place a name can be must agree.
//
// The query protocol names its operation in Action (query string or form
// body) and the JSON protocol in X-Amz-Target (POST only), both at the
// root path; elsewhere the request is a REST or RPCv2 CBOR one, which AWS
// routes by its path, and an Action or X-Amz-Target it carries says
// nothing of what it does: such a request is unknown.
func rpcName(req *http.Request) (string, error) {
	targets := req.Header.Values("X-Amz-Target")
	if len(targets) > 1 {
		return "", unsupported("the request carries X-Amz-Target more than once")
	}
	query, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		return "", unsupported("malformed query string")
	}
	names, err := actions(query)
	if err != nil {
		return "", err
	}
	if p := req.URL.EscapedPath(); p != "" && p != "/" {
		// Not the root: only RPCv2 CBOR's path names an operation, and
		// a request that also carries another name is not one.
		if len(targets) > 0 || len(names) > 0 {
			return "", nil
		}
		return oneName(cborName(req)...)
	}
	if len(targets) == 1 {
		if req.Method != http.MethodPost {
			return "", nil
		}
		t := targets[0]
		names = append(names, t[strings.LastIndexByte(t, '.')+1:])
	}
	if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" && req.Method == http.MethodPost {
		if enc := req.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
			// A compressed form: the action it names cannot be read here.
			return "", nil
		}
		body, err := readBody(req)
		if err != nil {
			return "", err
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return "", unsupported("malformed form body")
		}
		an, err := actions(form)
		if err != nil {
			return "", err
		}
		names = append(names, an...)
	}
	if isCBOR(req) {
		// RPCv2 CBOR names its operation in a path that is not the root.
		return "", nil
	}
	return oneName(names...)
}

// oneName is the one operation names agree on, "" when there are none;
// an *Error when they disagree or the name is malformed.
func oneName(names ...string) (string, error) {
	if len(names) == 0 {
		return "", nil
	}
	for _, n := range names {
		if n != names[0] {
			return "", unsupported(fmt.Sprintf("the request names two operations, %.64q and %.64q", names[0], n))
		}
	}
	if !validOperation(names[0]) {
		return "", unsupported(fmt.Sprintf("malformed operation name %.64q", names[0]))
	}
	return names[0], nil
}

func isCBOR(req *http.Request) bool {
	return strings.EqualFold(req.Header.Get("Smithy-Protocol"), "rpc-v2-cbor")
}

// cborName is the operation an RPCv2 CBOR request names in its path
// (/service/S/operation/Op); none for any other request.
func cborName(req *http.Request) []string {
	if !isCBOR(req) {
		return nil
	}
	parts := strings.Split(req.URL.Path, "/")
	if len(parts) == 5 && parts[0] == "" && parts[1] == "service" && parts[3] == "operation" {
		return parts[4:]
	}
	return nil
}

// actions are the Action parameters of a query or form. A parameter
// spelled otherwise (action, ACTION) is refused rather than guessed at.
func actions(v url.Values) ([]string, error) {
	var names []string
	for k, vs := range v {
		switch {
		case k == "Action":
			names = append(names, vs...)
		case strings.EqualFold(k, "Action"):
			return nil, unsupported(fmt.Sprintf("the request names its operation in a parameter %.16q, not Action", k))
		}
	}
	return names, nil
}

func validOperation(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// partition is the ARN partition of region.
func partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-iso-"):
		return "aws-iso"
	case strings.HasPrefix(region, "us-isob-"):
		return "aws-iso-b"
	case strings.HasPrefix(region, "eu-isoe-"):
		return "aws-iso-e"
	case strings.HasPrefix(region, "us-isof-"):
		return "aws-iso-f"
	}
	return "aws"
}
