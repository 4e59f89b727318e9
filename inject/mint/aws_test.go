package mint

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/stackctl/stack/internal/awstest"
	"github.com/stackctl/stack/passport"
)

const testRoleARN = "arn:aws:iam::123456789012:role/agents"

func awsParams(t testing.TB, p AWSParams) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAWSCheck(t *testing.T) {
	good := AWSParams{RoleARN: testRoleARN, Region: "eu-west-1", AccessKeyID: "AKIAIOSFODNN7EXAMPLE"}
	secret := []byte("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
	cases := []struct {
		name    string
		edit    func(p *AWSParams)
		raw     string // replaces the params when set
		root    []byte
		wantErr string // substring; "" means valid
	}{
		{name: "minimal, duration defaults to 900", edit: func(*AWSParams) {}},
		{name: "duration 900", edit: func(p *AWSParams) { p.DurationSeconds = 900 }},
		{name: "role with a path", edit: func(p *AWSParams) { p.RoleARN = "arn:aws:iam::123456789012:role/team/agents" }},
		{name: "china partition", edit: func(p *AWSParams) { p.RoleARN = "arn:aws-cn:iam::123456789012:role/a"; p.Region = "cn-north-1" }},
		{name: "https endpoint", edit: func(p *AWSParams) { p.STSEndpoint = "https://sts.example.com" }},
		{name: "http loopback endpoint", edit: func(p *AWSParams) { p.STSEndpoint = "http://127.0.0.1:5000" }},
		{name: "http localhost endpoint", edit: func(p *AWSParams) { p.STSEndpoint = "http://localhost:5000" }},
		{name: "http ::1 endpoint", edit: func(p *AWSParams) { p.STSEndpoint = "http://[::1]:5000" }},
		{name: "external id", edit: func(p *AWSParams) { p.ExternalID = "tenant-42" }},
		{name: "http remote endpoint", edit: func(p *AWSParams) { p.STSEndpoint = "http://sts.example.com" }, wantErr: "http only on a loopback address"},
		{name: "endpoint with user", edit: func(p *AWSParams) { p.STSEndpoint = "https://u:p@sts.example.com" }, wantErr: "no user, query or fragment"},
		{name: "ftp endpoint", edit: func(p *AWSParams) { p.STSEndpoint = "ftp://sts.example.com" }, wantErr: "want an https URL"},
		{name: "duration above 900", edit: func(p *AWSParams) { p.DurationSeconds = 3600 }, wantErr: "duration_seconds 3600"},
		{name: "duration below AWS's minimum", edit: func(p *AWSParams) { p.DurationSeconds = 60 }, wantErr: "at least 900 seconds"},
		{name: "no role", edit: func(p *AWSParams) { p.RoleARN = "" }, wantErr: "role_arn"},
		{name: "user, not role", edit: func(p *AWSParams) { p.RoleARN = "arn:aws:iam::123456789012:user/bob" }, wantErr: "role_arn"},
		{name: "short account", edit: func(p *AWSParams) { p.RoleARN = "arn:aws:iam::1234:role/a" }, wantErr: "role_arn"},
		{name: "no region", edit: func(p *AWSParams) { p.Region = "" }, wantErr: "region"},
		{name: "bad region", edit: func(p *AWSParams) { p.Region = "US East" }, wantErr: "region"},
		{name: "no access key id", edit: func(p *AWSParams) { p.AccessKeyID = "" }, wantErr: "access_key_id"},
		{name: "bad external id", edit: func(p *AWSParams) { p.ExternalID = "a b" }, wantErr: "external_id"},
		{name: "unknown field", raw: `{"role_arn":"` + testRoleARN + `","region":"us-east-1","access_key_id":"AKIAIOSFODNN7EXAMPLE","secret":"x"}`, wantErr: "unknown field"},
		{name: "every problem at once", edit: func(p *AWSParams) { p.RoleARN, p.Region = "", "" }, wantErr: "role_arn \"\": want arn:aws:iam::ACCOUNT:role/NAME\nregion"},
		{name: "no secret", edit: func(*AWSParams) {}, root: []byte{}, wantErr: "secret access key"},
		{name: "secret with a space", edit: func(*AWSParams) {}, root: []byte("wJalrXUtnFEMI K7MDENG/bPxRfiCYEXAMPLEKEY"), wantErr: "printable ASCII"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := good
			var params json.RawMessage
			if c.raw != "" {
				params = json.RawMessage(c.raw)
			} else {
				c.edit(&p)
				params = awsParams(t, p)
			}
			root := secret
			if c.root != nil {
				root = c.root
			}
			got, err := Check(KindAWS, params, root)
			if c.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Check: %v, want ErrInvalid with %q", err, c.wantErr)
				}
				if strings.Contains(err.Error(), string(root)) && len(root) > 0 {
					t.Fatalf("Check's error holds the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			var norm AWSParams
			if err := json.Unmarshal(got, &norm); err != nil {
				t.Fatal(err)
			}
			if norm.DurationSeconds != 900 {
				t.Errorf("normalized duration_seconds %d, want 900", norm.DurationSeconds)
			}
			if TTL(KindAWS, got) != 15*time.Minute || TTL(KindAWS, got) > MaxAWSDuration {
				t.Errorf("TTL %v, want 15m", TTL(KindAWS, got))
			}
		})
	}
}

func TestSessionPolicy(t *testing.T) {
	cases := []struct {
		name    string
		n       *passport.Narrowing
		want    string
		wantErr error
	}{
		{name: "nil narrowing", n: nil, wantErr: ErrNoAWSActions},
		{name: "no actions", n: &passport.Narrowing{Resources: []string{"arn:aws:s3:::b"}}, wantErr: ErrNoAWSActions},
		{
			name: "actions only: any resource",
			n:    &passport.Narrowing{Actions: []string{"s3:GetObject"}},
			want: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["*"]}]}`,
		},
		{
			name: "actions and resources, sorted and deduplicated",
			n: &passport.Narrowing{Actions: []string{"s3:ListBucket", "s3:GetObject", "s3:GetObject"},
				Resources: []string{"arn:aws:s3:::data/*", "arn:aws:s3:::data"}},
			want: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::data","arn:aws:s3:::data/*"]}]}`,
		},
		{
			name: "regions as a condition",
			n:    &passport.Narrowing{Actions: []string{"sqs:SendMessage"}, Regions: []string{"eu-west-1", "us-east-1"}},
			want: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:SendMessage"],"Resource":["*"],` +
				`"Condition":{"StringEquals":{"aws:RequestedRegion":["eu-west-1","us-east-1"]}}}]}`,
		},
		{
			name:    "too long for AWS",
			n:       &passport.Narrowing{Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::" + strings.Repeat("x", 2100)}},
			wantErr: ErrNarrow,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := SessionPolicy(c.n)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("SessionPolicy: %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("SessionPolicy: %v", err)
			}
			if got != c.want {
				t.Errorf("SessionPolicy:\n got %s\nwant %s", got, c.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not JSON: %s", got)
			}
		})
	}
	if _, err := SessionPolicy(nil); err == nil || !strings.Contains(err.Error(), "narrow.actions") {
		t.Errorf("the refusal should say what the grant lacks: %v", err)
	}
}

func TestSessionName(t *testing.T) {
	cases := map[string]string{
		"build-bot":                   "stack-build-bot",
		"":                            "stack-",
		"team/bot 1":                  "stack-team-bot-1",
		"a@b.c,d=e+f_g":               "stack-a@b.c,d=e+f_g",
		"ünï":                         "stack--n-",
		strings.Repeat("long-", 20):   "stack-" + strings.Repeat("long-", 20)[:58],
		"spiffe://corp/ns/prod/agent": "stack-spiffe---corp-ns-prod-agent",
	}
	for agent, want := range cases {
		if got := SessionName(agent); got != want {
			t.Errorf("SessionName(%q) = %q, want %q", agent, got, want)
		}
		if len(SessionName(agent)) > 64 {
			t.Errorf("SessionName(%q) longer than 64", agent)
		}
	}
}

// stsRecorder keeps the AssumeRole request it is sent and answers it
// with an error.
type stsRecorder struct {
	host string
	form url.Values
}

func (r *stsRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(req.Body)
	r.host = req.URL.Host
	r.form, _ = url.ParseQuery(string(b))
	return &http.Response{StatusCode: http.StatusForbidden, Header: http.Header{}, Request: req,
		Body: io.NopCloser(strings.NewReader(`<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>`))}, nil
}

// TestAWSMintRequest checks the AssumeRole request itself: the SDK's
// regional endpoint, the session name, 900 seconds, the session policy.
func TestAWSMintRequest(t *testing.T) {
	rec := &stsRecorder{}
	params := awsParams(t, AWSParams{RoleARN: testRoleARN, Region: "eu-west-1", AccessKeyID: "AKIAIOSFODNN7EXAMPLE", ExternalID: "tenant-42"})
	narrow := &passport.Narrowing{Actions: []string{"s3:GetObject"}, Regions: []string{"eu-west-1"}}
	_, err := Mint(context.Background(), Env{HTTPClient: &http.Client{Transport: rec}},
		Request{Kind: KindAWS, Params: params, Root: []byte("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), Agent: "team/bot", Narrow: narrow})
	if !errors.Is(err, ErrMint) || !strings.Contains(err.Error(), "AccessDenied: no") {
		t.Errorf("Mint: %v, want ErrMint with the STS error", err)
	}
	if rec.host != "sts.eu-west-1.amazonaws.com" {
		t.Errorf("STS endpoint %q, want the regional one", rec.host)
	}
	want, _ := SessionPolicy(narrow)
	for k, v := range map[string]string{
		"Action": "AssumeRole", "RoleArn": testRoleARN, "RoleSessionName": "stack-team-bot",
		"DurationSeconds": "900", "ExternalId": "tenant-42", "Policy": want,
	} {
		if got := rec.form.Get(k); got != v {
			t.Errorf("AssumeRole %s = %q, want %q", k, got, v)
		}
	}
}

// countingTransport counts the requests it carries.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// TestAWSMint mints sessions from moto's STS, with signatures checked and
// session policies evaluated, and uses them.
func TestAWSMint(t *testing.T) {
	acct := awstest.Start(t, awstest.Options{Bucket: "data", Objects: map[string]string{"a.txt": "hello"}})
	params := awsParams(t, AWSParams{RoleARN: acct.RoleARN, Region: acct.Region, STSEndpoint: acct.Endpoint, AccessKeyID: acct.AccessKeyID})
	params, err := Check(KindAWS, params, []byte(acct.SecretAccessKey))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tr := &countingTransport{}
	env := Env{HTTPClient: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	narrow := &passport.Narrowing{Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::data/*"}}

	t.Run("session narrowed by the grant", func(t *testing.T) {
		before := time.Now()
		tok, err := Mint(ctx, env, Request{Kind: KindAWS, Params: params, Root: []byte(acct.SecretAccessKey), Agent: "build-bot", Narrow: narrow})
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		if tr.n.Load() == 0 {
			t.Error("Mint did not use Env.HTTPClient")
		}
		if tok.AWS == nil || tok.AWS.AccessKeyID == "" || tok.AWS.SecretAccessKey == "" || tok.AWS.SessionToken == "" {
			t.Fatalf("Mint: incomplete session %+v", tok.AWS)
		}
		if !tok.Expiry.Equal(tok.AWS.Expiry) || tok.Expiry.After(before.Add(MaxAWSDuration+time.Minute)) || !tok.Expiry.After(before) {
			t.Errorf("expiry %v: want the session's, within 15 minutes of %v", tok.Expiry, before)
		}
		if string(tok.Secret()) != tok.AWS.SessionToken {
			t.Error("Secret() is not the session token")
		}
		client := s3.New(s3.Options{Region: acct.Region, BaseEndpoint: aws.String(acct.Endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(tok.AWS.AccessKeyID, tok.AWS.SecretAccessKey, tok.AWS.SessionToken)})
		out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("a.txt")})
		if err != nil {
			t.Fatalf("GetObject with the session: %v", err)
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if string(b) != "hello" {
			t.Errorf("GetObject: %q", b)
		}
		_, err = client.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("data")})
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != "AccessDenied" {
			t.Errorf("ListObjects outside the session policy: %v, want AccessDenied", err)
		}
	})

	t.Run("no narrowing: refused before any call", func(t *testing.T) {
		n := tr.n.Load()
		for _, nw := range []*passport.Narrowing{nil, {Resources: []string{"*"}}} {
			_, err := Mint(ctx, env, Request{Kind: KindAWS, Params: params, Root: []byte(acct.SecretAccessKey), Agent: "a", Narrow: nw})
			if !errors.Is(err, ErrNarrow) || !strings.Contains(err.Error(), "narrow.actions") {
				t.Errorf("Mint(%+v): %v, want ErrNarrow naming narrow.actions", nw, err)
			}
		}
		if tr.n.Load() != n {
			t.Error("Mint called STS for an unscoped session")
		}
	})

	t.Run("wrong secret", func(t *testing.T) {
		wrong := "WRONGwrongWRONGwrongWRONGwrongWRONGwrong"
		_, err := Mint(ctx, env, Request{Kind: KindAWS, Params: params, Root: []byte(wrong), Agent: "a", Narrow: narrow})
		if !errors.Is(err, ErrMint) || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
			t.Fatalf("Mint: %v, want ErrMint with SignatureDoesNotMatch", err)
		}
		if strings.Contains(err.Error(), wrong) {
			t.Errorf("the error holds the secret: %v", err)
		}
	})

	t.Run("role the user may not assume", func(t *testing.T) {
		other := awsParams(t, AWSParams{RoleARN: "arn:aws:iam::123456789012:role/admin", Region: acct.Region, STSEndpoint: acct.Endpoint, AccessKeyID: acct.AccessKeyID})
		_, err := Mint(ctx, env, Request{Kind: KindAWS, Params: other, Root: []byte(acct.SecretAccessKey), Agent: "a", Narrow: narrow})
		if !errors.Is(err, ErrMint) || !strings.Contains(err.Error(), "AccessDenied") {
			t.Fatalf("Mint: %v, want ErrMint with AccessDenied", err)
		}
		if strings.Contains(err.Error(), acct.SecretAccessKey) {
			t.Errorf("the error holds the secret: %v", err)
		}
	})

	t.Run("STS down", func(t *testing.T) {
		down := awsParams(t, AWSParams{RoleARN: acct.RoleARN, Region: acct.Region, STSEndpoint: "http://127.0.0.1:1", AccessKeyID: acct.AccessKeyID})
		_, err := Mint(ctx, env, Request{Kind: KindAWS, Params: down, Root: []byte(acct.SecretAccessKey), Agent: "a", Narrow: narrow})
		if !errors.Is(err, ErrMint) || strings.Contains(err.Error(), acct.SecretAccessKey) {
			t.Fatalf("Mint: %v, want ErrMint without the secret", err)
		}
	})
}

// BenchmarkMintAWS is the cost of a fresh aws-sts mint: one AssumeRole
// against moto on loopback (a cached lease costs a map lookup instead).
func BenchmarkMintAWS(b *testing.B) {
	acct := awstest.Start(b, awstest.Options{})
	params := awsParams(b, AWSParams{RoleARN: acct.RoleARN, Region: acct.Region, STSEndpoint: acct.Endpoint, AccessKeyID: acct.AccessKeyID})
	narrow := &passport.Narrowing{Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::data/*"}}
	env := Env{HTTPClient: &http.Client{Timeout: 30 * time.Second}}
	b.Run(KindAWS, func(b *testing.B) {
		for b.Loop() {
			if _, err := Mint(context.Background(), env, Request{Kind: KindAWS, Params: params, Root: []byte(acct.SecretAccessKey), Agent: "bench", Narrow: narrow}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// An STS endpoint that echoes the secret access key in its answer (a
// broken or hostile one: the key itself is never sent) does not get it
// into the error, wherever it puts it, and what it says is cut short and
// kept to one line.
func TestAWSMintErrorHoldsNoSecret(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	for _, tc := range []struct {
		name   string
		status int
		body   string
		says   string
	}{
		{"in the message", http.StatusForbidden,
			`<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>the key ` + secret + ` is not valid</Message></Error><RequestId>r1</RequestId></ErrorResponse>`,
			"InvalidClientTokenId: the key [redacted] is not valid"},
		{"in the code", http.StatusForbidden,
			`<ErrorResponse><Error><Type>Sender</Type><Code>` + secret + `</Code><Message>no</Message></Error></ErrorResponse>`,
			"[redacted]: no"},
		{"where a long message is cut", http.StatusBadRequest,
			`<ErrorResponse><Error><Code>ValidationError</Code><Message>` + strings.Repeat("x", 280) + secret + `</Message></Error></ErrorResponse>`,
			"ValidationError: xxx"},
		{"on lines of its own", http.StatusForbidden,
			`<ErrorResponse><Error><Code>AccessDenied</Code><Message>denied&#10;` + secret + `&#10;forged log line</Message></Error></ErrorResponse>`,
			"AccessDenied: denied [redacted] forged log line"},
		{"in a body that is not an STS error", http.StatusInternalServerError, "upstream said: " + secret, "500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/xml")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer sts.Close()
			params := awsParams(t, AWSParams{RoleARN: testRoleARN, Region: "eu-west-1", STSEndpoint: sts.URL, AccessKeyID: "AKIAIOSFODNN7EXAMPLE"})
			_, err := Mint(context.Background(), Env{HTTPClient: sts.Client()}, Request{Kind: KindAWS, Params: params,
				Root: []byte(secret), Agent: "bot", Narrow: &passport.Narrowing{Actions: []string{"s3:GetObject"}}})
			if !errors.Is(err, ErrMint) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Mint: %v, want ErrMint saying %q", err, tc.says)
			}
			mustNotLeak(t, err, secret, secret[:12], secret[len(secret)-12:])
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("Mint: %q spans lines", err)
			}
		})
	}
}
