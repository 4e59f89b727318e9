package mint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/stackctl/stack/passport"
)

// AWSParams are the parameters of an aws-sts credential. Its root
// material is the secret access key of the base credential.
type AWSParams struct {
	// RoleARN is the role each agent's session assumes:
	// arn:PARTITION:iam::ACCOUNT:role/NAME. Required.
	RoleARN string `json:"role_arn"`
	// Region is the STS region. Required.
	Region string `json:"region"`
	// STSEndpoint replaces the SDK's regional STS endpoint: an https URL,
	// or http on a loopback address (a local STS for tests).
	STSEndpoint string `json:"sts_endpoint,omitempty"`
	// DurationSeconds is the session's lifetime. AssumeRole allows no
	// less than 900 seconds, and sessions minted here last no longer than
	// MaxAWSDuration (900 seconds), so it is 900: zero means 900, any
	// other value is refused.
	DurationSeconds int `json:"duration_seconds,omitempty"`
	// ExternalID is passed to AssumeRole when the role's trust policy
	// asks for one.
	ExternalID string `json:"external_id,omitempty"`
	// AccessKeyID identifies the base credential (an IAM user's access
	// key) that calls AssumeRole. Required.
	AccessKeyID string `json:"access_key_id"`
}

// awsMinDuration is the shortest session AssumeRole grants
// (DurationSeconds has a minimum of 900).
const awsMinDuration = 15 * time.Minute

// awsMaxSessionPolicy is the most characters AWS takes for an inline
// session policy (AssumeRole's Policy parameter).
const awsMaxSessionPolicy = 2048

var (
	awsRoleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$`)
	awsRegion  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
	awsKeyID   = regexp.MustCompile(`^[A-Z0-9]{16,128}$`)
	// ExternalId: 2 to 1224 characters of [\w+=,.@:/-].
	awsExternalID = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
)

type awsKind struct{}

func init() { register(KindAWS, awsKind{}) }

func (awsKind) check(params json.RawMessage, root []byte) (json.RawMessage, error) {
	p, err := awsDecode(params)
	if err != nil {
		return nil, err
	}
	if err := awsCheckSecret(root); err != nil {
		return nil, err
	}
	return encodeParams(p), nil
}

// awsDecode reads and validates params, filling in the duration.
func awsDecode(params json.RawMessage) (AWSParams, error) {
	var p AWSParams
	if err := decodeParams(KindAWS, params, &p); err != nil {
		return AWSParams{}, err
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if !awsRoleARN.MatchString(p.RoleARN) {
		bad("role_arn %q: want arn:aws:iam::ACCOUNT:role/NAME", p.RoleARN)
	}
	if !awsRegion.MatchString(p.Region) {
		bad("region %q: want an AWS region such as us-east-1", p.Region)
	}
	if p.STSEndpoint != "" {
		if err := awsCheckEndpoint(p.STSEndpoint); err != nil {
			bad("sts_endpoint %q: %v", p.STSEndpoint, err)
		}
	}
	switch p.DurationSeconds {
	case 0:
		p.DurationSeconds = int(MaxAWSDuration / time.Second)
	case int(MaxAWSDuration / time.Second):
	default:
		bad("duration_seconds %d: AssumeRole sessions last at least %d seconds and these at most %d: use %d or leave it out",
			p.DurationSeconds, int(awsMinDuration/time.Second), int(MaxAWSDuration/time.Second), int(MaxAWSDuration/time.Second))
	}
	if p.ExternalID != "" && (len(p.ExternalID) < 2 || len(p.ExternalID) > 1224 || !awsExternalID.MatchString(p.ExternalID)) {
		bad("external_id: want 2 to 1224 characters of letters, digits and +=,.@:/-_")
	}
	if !awsKeyID.MatchString(p.AccessKeyID) {
		bad("access_key_id %q: want the base credential's access key ID, such as AKIA...", p.AccessKeyID)
	}
	if len(errs) > 0 {
		return AWSParams{}, fmt.Errorf("%w: %s parameters: %w", ErrInvalid, KindAWS, errors.Join(errs...))
	}
	return p, nil
}

func awsCheckSecret(root []byte) error {
	if len(root) < 16 || len(root) > 256 {
		return fmt.Errorf("%w: %s root material: want the base credential's secret access key (16 to 256 characters), got %d bytes",
			ErrInvalid, KindAWS, len(root))
	}
	for _, c := range root {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: %s root material: a secret access key is printable ASCII without spaces", ErrInvalid, KindAWS)
		}
	}
	return nil
}

// awsCheckEndpoint accepts an https URL, or an http one on a loopback
// address: the base credential signs every call, but the session
// credentials come back in the response.
func awsCheckEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Host == "" {
		return errors.New("want scheme://host[:port][/path], no user, query or fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if h == "localhost" {
			return nil
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("http only on a loopback address (127.0.0.1, ::1, localhost): use https")
	default:
		return errors.New("want an https URL")
	}
}

func (awsKind) ttl(params json.RawMessage) time.Duration {
	p, err := awsDecode(params)
	if err != nil {
		return 0
	}
	return time.Duration(p.DurationSeconds) * time.Second
}

func (awsKind) mint(ctx context.Context, env Env, r Request) (Token, error) {
	p, err := awsDecode(r.Params)
	if err != nil {
		return Token{}, err
	}
	if err := awsCheckSecret(r.Root); err != nil {
		return Token{}, err
	}
	policy, err := SessionPolicy(r.Narrow)
	if err != nil {
		return Token{}, err
	}
	opts := sts.Options{
		Region:      p.Region,
		Credentials: credentials.NewStaticCredentialsProvider(p.AccessKeyID, string(r.Root), ""),
		HTTPClient:  env.HTTPClient,
	}
	if p.STSEndpoint != "" {
		opts.BaseEndpoint = aws.String(p.STSEndpoint)
	}
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(p.RoleARN),
		RoleSessionName: aws.String(SessionName(r.Agent)),
		DurationSeconds: aws.Int32(int32(p.DurationSeconds)),
		Policy:          aws.String(policy),
	}
	if p.ExternalID != "" {
		in.ExternalId = aws.String(p.ExternalID)
	}
	out, err := sts.New(opts).AssumeRole(ctx, in)
	if err != nil {
		return Token{}, awsError(p.RoleARN, err, r.Root)
	}
	c := out.Credentials
	if c == nil || aws.ToString(c.AccessKeyId) == "" || aws.ToString(c.SecretAccessKey) == "" ||
		aws.ToString(c.SessionToken) == "" || c.Expiration == nil {
		return Token{}, fmt.Errorf("%w: %s: AssumeRole %s answered without complete credentials", ErrMint, KindAWS, p.RoleARN)
	}
	s := &AWSSession{
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
		Expiry:          *c.Expiration,
	}
	return Token{AWS: s, Expiry: s.Expiry}, nil
}

// awsError is the ErrMint error for a failed AssumeRole: what STS
// answered (its error code and message), made fit for a log line, with
// the secret redacted should the endpoint echo it. The cause stays
// reachable with errors.Is/As.
func awsError(role string, err error, secret []byte) error {
	msg := redact(err.Error(), secret)
	if apiErr, ok := errors.AsType[smithy.APIError](err); ok {
		msg = serverText(apiErr.ErrorCode(), secret) + ": " + serverText(apiErr.ErrorMessage(), secret)
	}
	return &mintError{msg: fmt.Sprintf("%s: %s: AssumeRole %s: %s", ErrMint, KindAWS, role, msg), cause: err}
}

// SessionName is the AssumeRole session name of agent's sessions:
// "stack-" and the agent's name, with every character AWS does not take
// in a session name ([\w+=,.@-]) replaced by '-', at most 64 characters.
// CloudTrail records it, so an operator sees which agent acted.
func SessionName(agent string) string {
	name := "stack-" + strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("_+=,.@-", r) {
			return r
		}
		return '-'
	}, agent)
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// ErrNoAWSActions is the refusal to mint an AWS session for a grant that
// does not name the actions it allows: without a session policy, the
// session could do whatever the role can.
var ErrNoAWSActions = fmt.Errorf("%w: an aws-sts credential needs the grant to name the AWS actions it allows: narrow.actions", ErrNarrow)

// SessionPolicy is the session policy for a grant's narrowing: one
// statement that allows the narrowing's actions on its resources (any
// resource when it names none), in its regions when it names some
// (condition aws:RequestedRegion, which is us-east-1 for global services
// such as IAM). A session's permissions are the intersection of the
// role's and this policy's, so it can only narrow. A narrowing without
// actions is refused (ErrNoAWSActions), never minted unscoped; one AWS
// cannot take (an empty entry, a policy too long) is refused too. Every
// refusal wraps ErrNarrow.
func SessionPolicy(n *passport.Narrowing) (string, error) {
	if n == nil || len(n.Actions) == 0 {
		return "", ErrNoAWSActions
	}
	type statement struct {
		Effect    string                         `json:"Effect"`
		Action    []string                       `json:"Action"`
		Resource  []string                       `json:"Resource"`
		Condition map[string]map[string][]string `json:"Condition,omitempty"`
	}
	type policy struct {
		Version   string      `json:"Version"`
		Statement []statement `json:"Statement"`
	}
	st := statement{Effect: "Allow", Action: awsSortedSet(n.Actions), Resource: awsSortedSet(n.Resources)}
	if len(st.Resource) == 0 {
		st.Resource = []string{"*"}
	}
	for _, list := range [][]string{st.Action, st.Resource, n.Regions} {
		if slices.Contains(list, "") {
			return "", fmt.Errorf("%w: %s: the grant's narrowing names an empty action, resource or region", ErrNarrow, KindAWS)
		}
	}
	if len(n.Regions) > 0 {
		st.Condition = map[string]map[string][]string{
			"StringEquals": {"aws:RequestedRegion": awsSortedSet(n.Regions)},
		}
	}
	b, err := json.Marshal(policy{Version: "2012-10-17", Statement: []statement{st}})
	if err != nil {
		return "", fmt.Errorf("%w: %s: session policy: %v", ErrInvalid, KindAWS, err)
	}
	if len(b) > awsMaxSessionPolicy {
		return "", fmt.Errorf("%w: %s: the session policy for this grant is %d characters, AWS takes at most %d: name fewer actions or resources (wildcards such as s3:Get* help)",
			ErrNarrow, KindAWS, len(b), awsMaxSessionPolicy)
	}
	return string(b), nil
}

func awsSortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
