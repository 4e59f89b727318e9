package otlp

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// logsPath is where OTLP/HTTP receivers take logs, relative to the base
// URL that OTEL_EXPORTER_OTLP_ENDPOINT names.
const logsPath = "/v1/logs"

// logsURL turns Options.Endpoint into the URL that requests go to. Its
// errors never repeat the user information or query of the endpoint,
// since those are where a careless configuration puts an API key.
func logsURL(endpoint string) (string, error) {
	if endpoint == "" {
		return "", fmt.Errorf("endpoint is empty: set it to the receiver's base URL, such as http://collector:4318")
	}
	if strings.TrimSpace(endpoint) != endpoint {
		return "", fmt.Errorf("endpoint has leading or trailing spaces")
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		// url.Error repeats the whole input, password and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("endpoint does not parse as a URL: %v", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Opaque != "" || u.Host == "" {
		return "", fmt.Errorf("endpoint %q is not an http:// or https:// URL with a host, such as http://collector:4318", safeURL(u))
	}
	var problems []string
	if u.User != nil {
		problems = append(problems, "carries user information (put credentials in Headers)")
	}
	if u.RawQuery != "" || u.ForceQuery {
		problems = append(problems, "has a query (put API keys in Headers)")
	}
	if u.Fragment != "" {
		problems = append(problems, "has a fragment")
	}
	if u.Hostname() == "" {
		problems = append(problems, "has no host name")
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("endpoint %q %s", safeURL(u), strings.Join(problems, " and "))
	}
	// EscapedPath keeps a path's own escapes (such as %2F) as written.
	p := strings.TrimRight(u.EscapedPath(), "/")
	if !strings.HasSuffix(p, logsPath) {
		p += logsPath
	}
	return scheme + "://" + u.Host + p, nil
}

// safeURL is u without user information, query or fragment, for
// messages.
func safeURL(u *url.URL) string {
	s := *u
	s.User, s.RawQuery, s.ForceQuery, s.Fragment, s.RawFragment = nil, "", false, "", ""
	return s.String()
}
