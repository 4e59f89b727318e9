package passport

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestAllows(t *testing.T) {
	scope := Scope{
		{
			Hosts:       []string{"api.stripe.com"},
			Methods:     []string{"GET"},
			Paths:       []string{"/v1/balance", "/v1/charges/**", "/v1/customers/*/sources"},
			Credentials: []string{"stripe"},
		},
		{
			Hosts:   []string{"*.example.com", "Mixed.Case.ORG"},
			Methods: []string{"POST"},
			Paths:   []string{"/v1/posts", "/files/ch_*.json"},
			Params: []ParamConstraint{
				{Name: "status", From: FromBody, Op: OpIn, Values: []string{"draft", "scheduled"}},
				{Name: "channel", From: FromBody, Op: OpPrefix, Value: "blog-"},
			},
		},
		{
			Hosts: []string{"api.search.test"},
			Params: []ParamConstraint{
				{Name: "lang", From: FromQuery, Op: OpEq, Value: "en"},
				{Name: "q", From: FromQuery, Op: OpRegex, Value: `[a-z ]{1,20}`},
				{Name: "limit", From: FromBody, Op: OpEq, Value: "10"},
				{Name: "safe", From: FromBody, Op: OpEq, Value: "true"},
			},
		},
	}
	search := func(q string, body string) Request {
		v, _ := url.ParseQuery(q)
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		return Request{Host: "api.search.test", Method: "GET", Path: "/", Query: v, Body: b, ContentType: "application/json"}
	}
	post := func(body string) Request {
		return Request{Host: "cms.example.com", Method: "POST", Path: "/v1/posts", Body: []byte(body), ContentType: "application/json; charset=utf-8"}
	}
	const goodSearch = `{"limit":10,"safe":true}`
	cases := []struct {
		name   string
		req    Request
		allow  bool
		reason string // substring of the denial reason
	}{
		{"exact host, path, credential", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/balance", Credential: "stripe"}, true, ""},
		{"host with port", Request{Host: "api.stripe.com:443", Method: "GET", Path: "/v1/balance"}, true, ""},
		{"host upper case, trailing dot", Request{Host: "API.Stripe.COM.", Method: "GET", Path: "/v1/balance"}, true, ""},
		{"grant host mixed case", Request{Host: "mixed.case.org", Method: "POST", Path: "/v1/posts", Body: []byte(`{"status":"draft","channel":"blog-x"}`)}, true, ""},
		{"other host", Request{Host: "api.stripe.com.evil.io", Method: "GET", Path: "/v1/balance"}, false, "host not granted"},
		{"host suffix trick", Request{Host: "evilapi.stripe.com", Method: "GET", Path: "/v1/balance"}, false, "host not granted"},
		{"empty host", Request{Host: "", Method: "GET", Path: "/v1/balance"}, false, "host not granted"},
		{"wildcard one label", post(`{"status":"draft","channel":"blog-main"}`), true, ""},
		{"wildcard not apex", Request{Host: "example.com", Method: "POST", Path: "/v1/posts"}, false, "host not granted"},
		{"wildcard not two labels", Request{Host: "a.b.example.com", Method: "POST", Path: "/v1/posts"}, false, "host not granted"},
		{"method not granted", Request{Host: "api.stripe.com", Method: "DELETE", Path: "/v1/balance"}, false, "method not granted: DELETE"},
		{"method case sensitive", Request{Host: "api.stripe.com", Method: "get", Path: "/v1/balance"}, false, "method not granted"},
		{"double star remainder", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/ch_1/refunds"}, true, ""},
		{"double star matches nothing", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges"}, true, ""},
		{"double star trailing slash", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/"}, true, ""},
		{"single star one segment", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/customers/cus_1/sources"}, true, ""},
		{"single star not two segments", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/customers/a/b/sources"}, false, "path not granted"},
		{"glob inside segment", Request{Host: "x.example.com", Method: "POST", Path: "/files/ch_42.json", Body: []byte(`{"status":"draft","channel":"blog-a"}`)}, true, ""},
		{"glob inside segment mismatch", Request{Host: "x.example.com", Method: "POST", Path: "/files/ch_42.txt"}, false, "path not granted"},
		{"prefix is not a segment match", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/balancex"}, false, "path not granted"},
		{"traversal cleaned", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/../transfers"}, false, "path not granted: /v1/transfers"},
		{"traversal above root", Request{Host: "api.stripe.com", Method: "GET", Path: "/../../v1/balance"}, true, ""},
		{"encoded dot-dot", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/%2e%2e/transfers"}, false, "path not granted: /v1/transfers"},
		{"encoded dot-dot upper", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/%2E%2E/%2E%2E/admin"}, false, "path not granted: /admin"},
		{"encoded slash", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges%2F..%2F..%2Fadmin"}, false, "path not granted: /admin"},
		{"double encoding read twice", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/%252e%252e/admin"}, false, "path not granted: /v1/admin (decoded twice)"},
		{"bad encoding refused", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/%zz"}, false, "bad percent-encoding"},
		{"backslash refused", Request{Host: "api.stripe.com", Method: "GET", Path: `/v1/charges/..\admin`}, false, "backslash"},
		{"encoded NUL refused", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/a%00"}, false, "control character"},
		{"dot-dot-semicolon refused", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/..;/admin"}, false, "dot-dot segment"},
		{"relative path refused", Request{Host: "api.stripe.com", Method: "GET", Path: "v1/balance"}, false, "not absolute"},
		{"credential granted", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/balance", Credential: "stripe"}, true, ""},
		{"credential not granted", Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/balance", Credential: "github"}, false, "credential not granted: github"},
		{"credential on grant without credentials", post(`{"status":"draft","channel":"blog-a"}`), true, ""},
		{"in: value allowed", post(`{"status":"scheduled","channel":"blog-a"}`), true, ""},
		{"in: value refused", post(`{"status":"published","channel":"blog-a"}`), false, "param status (body): in failed"},
		{"in: missing", post(`{"channel":"blog-a"}`), false, "param status (body): missing"},
		{"in: duplicate key second bad", post(`{"status":"draft","status":"published","channel":"blog-a"}`), false, "param status (body): in failed"},
		{"in: not a scalar", post(`{"status":["draft"],"channel":"blog-a"}`), false, "not a string, number or boolean"},
		{"in: null", post(`{"status":null,"channel":"blog-a"}`), false, "not a string, number or boolean"},
		{"prefix: refused", post(`{"status":"draft","channel":"news-a"}`), false, "param channel (body): prefix failed"},
		{"prefix: nested field is not top level", post(`{"status":"draft","meta":{"channel":"blog-a"}}`), false, "param channel (body): missing"},
		{"body not json", post(`status=draft`), false, "not a JSON object"},
		{"body json array", post(`[{"status":"draft"}]`), false, "not a JSON object"},
		{"body trailing garbage", post(`{"status":"draft","channel":"blog-a"} {}`), false, "not a JSON object"},
		{"no body", Request{Host: "cms.example.com", Method: "POST", Path: "/v1/posts"}, false, "no body"},
		{"form body", Request{Host: "cms.example.com", Method: "POST", Path: "/v1/posts", ContentType: "application/x-www-form-urlencoded", Body: []byte("status=draft&channel=blog-a")}, true, ""},
		{"form body repeated value", Request{Host: "cms.example.com", Method: "POST", Path: "/v1/posts", ContentType: "application/x-www-form-urlencoded", Body: []byte("status=draft&status=live&channel=blog-a")}, false, "in failed"},
		{"unknown body type", Request{Host: "cms.example.com", Method: "POST", Path: "/v1/posts", ContentType: "text/plain", Body: []byte(`{"status":"draft"}`)}, false, "body type not understood"},
		{"eq + regex from query, number and bool from body", search("lang=en&q=hello+world", goodSearch), true, ""},
		{"eq: query refused", search("lang=de&q=hello", goodSearch), false, "param lang (query): eq failed"},
		{"eq: query missing", search("q=hello", goodSearch), false, "param lang (query): missing"},
		{"eq: repeated query one bad", search("lang=en&lang=de&q=hello", goodSearch), false, "param lang (query): eq failed"},
		{"regex anchored at end", search("lang=en&q=hello!", goodSearch), false, "param q (query): regex failed"},
		{"regex anchored at start", search("lang=en&q=!hello", goodSearch), false, "param q (query): regex failed"},
		{"regex length", search("lang=en&q="+strings.Repeat("a", 21), goodSearch), false, "regex failed"},
		{"eq: number by JSON text", search("lang=en&q=a", `{"limit":10.0,"safe":true}`), false, "param limit (body): eq failed"},
		{"eq: string is not number", search("lang=en&q=a", `{"limit":"10","safe":true}`), true, ""},
		{"eq: bool", search("lang=en&q=a", `{"limit":10,"safe":false}`), false, "param safe (body): eq failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := scope.Allows(tc.req)
			if d.Allowed != tc.allow {
				t.Fatalf("Allowed = %v (%q), want %v", d.Allowed, d.Reason, tc.allow)
			}
			if !tc.allow && !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Reason = %q, want it to contain %q", d.Reason, tc.reason)
			}
			if tc.allow && (d.Grant < 0 || d.Reason != "") {
				t.Fatalf("allowed decision = %+v", d)
			}
		})
	}
}

func TestAllowsEmptyScopeAndAnyGrant(t *testing.T) {
	if d := (Scope{}).Allows(Request{Host: "a.com", Method: "GET", Path: "/"}); d.Allowed {
		t.Fatal("empty scope allowed a request")
	}
	any := Scope{{Hosts: []string{"a.com"}}}
	if d := any.Allows(Request{Host: "a.com", Method: "PATCH", Path: "/x/y"}); !d.Allowed {
		t.Fatalf("grant without methods or paths denied: %s", d.Reason)
	}
	if d := any.Allows(Request{Host: "a.com", Method: "GET", Path: "/", Credential: "stripe"}); d.Allowed {
		t.Fatal("grant without credentials allowed a credential")
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	bad := Scope{
		{Hosts: nil},
		{
			Hosts:       []string{"*", "*.com", "a.*.com", "api.stripe.com:443", "exa mple.com", "*.example.com", "10.0.0.1"},
			Methods:     []string{"get", "GET"},
			Paths:       []string{"v1", "/v1//x", "/v1/../x", "/**/x", "/v1/a**", "/v1/%2e", "/v1/"},
			Credentials: []string{"ok", "not ok"},
			Params: []ParamConstraint{
				{Name: "", From: "header", Op: "like"},
				{Name: "a", From: FromQuery, Op: OpIn},
				{Name: "b", From: FromQuery, Op: OpEq, Values: []string{"x"}},
				{Name: "c", From: FromBody, Op: OpRegex, Value: "("},
				{Name: "d", From: FromBody, Op: OpRegex, Value: "a)|(b"},
				{Name: "e", From: FromBody, Op: OpPrefix},
				{Name: "f", From: FromBody, Op: OpRegex, Value: strings.Repeat("a", MaxRegexLen+1)},
			},
		},
	}
	err := bad.Validate()
	if !errors.Is(err, ErrInvalidScope) {
		t.Fatalf("err = %v, want ErrInvalidScope", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"grant[0].hosts: at least one host",
		`grant[1].hosts[0] "*"`, `grant[1].hosts[1] "*.com"`, `grant[1].hosts[2] "a.*.com"`,
		`grant[1].hosts[3] "api.stripe.com:443"`, `grant[1].hosts[4] "exa mple.com"`,
		`grant[1].methods[0] "get"`,
		`grant[1].paths[0] "v1"`, `grant[1].paths[1] "/v1//x"`, `grant[1].paths[2] "/v1/../x"`,
		`grant[1].paths[3] "/**/x"`, `grant[1].paths[4] "/v1/a**"`, `grant[1].paths[5] "/v1/%2e"`, `grant[1].paths[6] "/v1/"`,
		`grant[1].credentials[1] "not ok"`,
		"grant[1].params[0] () : name", "grant[1].params[0] (): from \"header\"", "grant[1].params[0] (): op \"like\"",
		"grant[1].params[1] (a): op in needs at least one value",
		"grant[1].params[2] (b): op eq takes value, not values",
		"grant[1].params[3] (c): regex",
		"grant[1].params[4] (d): regex",
		"grant[1].params[5] (e): prefix needs a non-empty value",
		"grant[1].params[6] (f): regex longer",
	} {
		if !strings.Contains(msg, strings.Replace(want, "() : ", "(): ", 1)) {
			t.Errorf("validation report lacks %q", want)
		}
	}
	for _, ok := range []string{`"*.example.com"`, `"10.0.0.1"`, `methods[1]`, `credentials[0]`} {
		if strings.Contains(msg, "grant[1]."+ok) || strings.Contains(msg, ok+":") {
			t.Errorf("valid entry %s reported: %s", ok, msg)
		}
	}
	if err := (Scope{}).Validate(); !errors.Is(err, ErrInvalidScope) {
		t.Errorf("empty scope: err = %v", err)
	}
	for name, r := range ReferenceRoles() {
		if err := r.Validate(); err != nil {
			t.Errorf("reference role %s: %v", name, err)
		}
	}
}

func TestParseScope(t *testing.T) {
	yamlDoc := `
- hosts: [api.stripe.com]
  methods: [GET]
  paths: ["/v1/charges/**"]
  credentials: [stripe]
  params:
    - {name: limit, from: query, op: in, values: [10, 20]}
`
	jsonDoc := `[{"hosts":["api.stripe.com"],"methods":["GET"],"paths":["/v1/charges/**"],"credentials":["stripe"],
	  "params":[{"name":"limit","from":"query","op":"in","values":["10","20"]}]}]`
	for name, doc := range map[string]string{"yaml": yamlDoc, "json": jsonDoc} {
		s, err := ParseScope([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d := s.Allows(Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges", Query: url.Values{"limit": {"20"}}})
		if !d.Allowed {
			t.Errorf("%s: parsed scope denies: %s", name, d.Reason)
		}
	}
	for name, doc := range map[string]string{
		"empty":             "  ",
		"unknown yaml key":  "- hosts: [a.com]\n  verbs: [GET]\n",
		"unknown json key":  `[{"hosts":["a.com"],"verbs":["GET"]}]`,
		"json trailing":     `[{"hosts":["a.com"]}] []`,
		"not a list":        "hosts: [a.com]",
		"invalid grant":     "- hosts: ['*']",
		"yaml syntax":       "- hosts: [a.com",
		"too large":         "#" + strings.Repeat("x", MaxScopeSize),
		"json object":       `{"hosts":["a.com"]}`,
		"empty list":        "[]",
		"regex escape":      `[{"hosts":["a.com"],"params":[{"name":"x","from":"query","op":"regex","value":".*)|(.*"}]}]`,
		"yaml alias of map": "- &a {hosts: [a.com]}\n- *a\n- {hosts: ['*']}",
	} {
		if _, err := ParseScope([]byte(doc)); !errors.Is(err, ErrInvalidScope) {
			t.Errorf("%s: err = %v, want ErrInvalidScope", name, err)
		}
	}
}

func TestCovers(t *testing.T) {
	parent := Scope{
		{
			Hosts:       []string{"api.stripe.com", "*.example.com"},
			Methods:     []string{"GET", "POST"},
			Paths:       []string{"/v1/charges/**", "/v1/customers/*/sources", "/files/ch_*"},
			Credentials: []string{"stripe", "cms"},
			Params: []ParamConstraint{
				{Name: "status", From: FromBody, Op: OpIn, Values: []string{"draft", "scheduled"}},
				{Name: "channel", From: FromBody, Op: OpPrefix, Value: "blog-"},
			},
		},
		{Hosts: []string{"api.github.com"}, Credentials: []string{"github"}},
		{Hosts: []string{"api.search.test"}, Params: []ParamConstraint{{Name: "q", From: FromQuery, Op: OpRegex, Value: "[a-z]+"}}},
	}
	keepParams := parent[0].Params
	narrow := func(g Grant) Grant {
		if g.Params == nil {
			g.Params = keepParams
		}
		return g
	}
	cases := []struct {
		name  string
		child Scope
		ok    bool
	}{
		{"identical", parent, true},
		{"fewer methods and paths", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges/ch_1"}})}, true},
		{"deeper double star", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges/ch_1/**"}})}, true},
		{"star segment under double star", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges/*/refunds"}})}, true},
		{"literal under star", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/customers/cus_1/sources"}})}, true},
		{"literal under glob", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/files/ch_1"}})}, true},
		{"host under wildcard", Scope{narrow(Grant{Hosts: []string{"Blog.Example.com"}, Methods: []string{"POST"}, Paths: []string{"/v1/charges"}})}, true},
		{"no credential", Scope{{Hosts: []string{"api.github.com"}}}, true},
		{"tighter params", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"POST"}, Paths: []string{"/v1/charges"}, Params: []ParamConstraint{
			{Name: "status", From: FromBody, Op: OpEq, Value: "draft"},
			{Name: "channel", From: FromBody, Op: OpPrefix, Value: "blog-eng-"},
			{Name: "extra", From: FromQuery, Op: OpEq, Value: "x"},
		}})}, true},
		{"in subset and eq under prefix", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"POST"}, Paths: []string{"/v1/charges"}, Params: []ParamConstraint{
			{Name: "status", From: FromBody, Op: OpIn, Values: []string{"draft"}},
			{Name: "channel", From: FromBody, Op: OpEq, Value: "blog-a"},
		}})}, true},
		{"eq under regex", Scope{{Hosts: []string{"api.search.test"}, Params: []ParamConstraint{{Name: "q", From: FromQuery, Op: OpEq, Value: "abc"}}}}, true},
		{"same regex", Scope{{Hosts: []string{"api.search.test"}, Params: []ParamConstraint{{Name: "q", From: FromQuery, Op: OpRegex, Value: "[a-z]+"}}}}, true},

		{"new host", Scope{narrow(Grant{Hosts: []string{"api.stripe.com", "evil.io"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges"}})}, false},
		{"wildcard child under exact", Scope{{Hosts: []string{"*.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges"}, Params: keepParams}}, false},
		{"apex under wildcard", Scope{narrow(Grant{Hosts: []string{"example.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges"}})}, false},
		{"new method", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"DELETE"}, Paths: []string{"/v1/charges"}})}, false},
		{"any method", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Paths: []string{"/v1/charges"}})}, false},
		{"any path", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}})}, false},
		{"outside path", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/transfers"}})}, false},
		{"double star under star", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/customers/*/sources/**"}})}, false},
		{"wider double star", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/**"}})}, false},
		{"star where glob", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/files/*"}})}, false},
		{"new credential", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges"}, Credentials: []string{"github"}})}, false},
		{"credential from another grant", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges"}, Credentials: []string{"stripe", "github"}})}, false},
		{"dropped param", Scope{{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges"}, Params: keepParams[:1]}}, false},
		{"looser in", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges"}, Params: []ParamConstraint{
			{Name: "status", From: FromBody, Op: OpIn, Values: []string{"draft", "published"}}, keepParams[1]}})}, false},
		{"shorter prefix", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges"}, Params: []ParamConstraint{
			keepParams[0], {Name: "channel", From: FromBody, Op: OpPrefix, Value: "blog"}}})}, false},
		{"param moved to query", Scope{narrow(Grant{Hosts: []string{"api.stripe.com"}, Methods: []string{"GET"}, Paths: []string{"/v1/charges"}, Params: []ParamConstraint{
			keepParams[0], {Name: "channel", From: FromQuery, Op: OpPrefix, Value: "blog-"}}})}, false},
		{"other regex", Scope{{Hosts: []string{"api.search.test"}, Params: []ParamConstraint{{Name: "q", From: FromQuery, Op: OpRegex, Value: "[a-z]*"}}}}, false},
		{"prefix under regex", Scope{{Hosts: []string{"api.search.test"}, Params: []ParamConstraint{{Name: "q", From: FromQuery, Op: OpPrefix, Value: "abc"}}}}, false},
		{"grants split across parents", Scope{{Hosts: []string{"api.stripe.com", "api.github.com"}}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.child.Validate(); err != nil {
				t.Fatalf("test child invalid: %v", err)
			}
			err := parent.Covers(tc.child)
			if tc.ok && err != nil {
				t.Fatalf("Covers: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrScopeNotSubset) {
				t.Fatalf("Covers = %v, want ErrScopeNotSubset", err)
			}
		})
	}
}
