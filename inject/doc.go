// Package inject puts real credentials into agents' requests in place of
// placeholders, and takes them out of the responses.
//
// An agent holds only a placeholder such as stk_ph_stripe. Apply finds
// placeholders in the Authorization header (Bearer, any other scheme, and
// inside Basic credentials), in configured headers such as X-Api-Key, and
// in query parameters; it replaces each with the credential's secret,
// rendered as the credential says (bearer, basic, a header template, a
// query parameter), only when the credential exists, is bound to the
// destination host and is granted by the passport. A placeholder bound for
// any other host is refused, wherever it sits in the URL or headers;
// placeholders inside bodies are never substituted. An agent may not send
// its own key in the place a managed credential renders into.
//
// NewRedactor wraps a response body so that any injected secret coming
// back (an echo, an error message) reaches the agent as its placeholder,
// streaming: it holds back only the few bytes that could begin a secret.
// It finds the secret as sent and in the spellings an echo gives it:
// percent-encoded, JSON- or HTML-escaped, and as the base64 of a Basic
// credential. RedactHeader does the same for headers and trailers.
package inject
