// Package judge asks a model endpoint whether content is a prompt
// injection: the optional last layer of the prompt_injection detector
// (package detect), for those who run such an endpoint.
//
// # Basics
//
// A Judge calls one endpoint of one of two kinds:
//
//   - KindChat, an OpenAI-compatible chat completions endpoint
//     (POST /v1/chat/completions) prompted as a judge with the prompt in
//     prompt.txt. It asks for a JSON object through response_format
//     {"type": "json_schema", ...} and also accepts that object as the
//     plain message content, for servers that ignore response_format.
//
//   - KindClassifier, a text classifier in the style of Prompt Guard,
//     sent {"inputs": "<content>"} and answering a list of label scores
//     (the shape is documented in classifier.go).
//
//     j, err := judge.New(judge.Options{
//     Kind:    judge.KindChat,
//     URL:     "https://llm.internal/v1/chat/completions",
//     Model:   "gpt-4o-mini",
//     APIKey:  os.Getenv("JUDGE_API_KEY"),
//     Timeout: 800 * time.Millisecond,
//     })
//     ...
//     defer j.Close()
//     v, err := j.Judge(ctx, judge.Args{Content: body})
//     if err != nil { /* timeout, transport error, refusal or malformed answer */ }
//     if v.Injection { /* v.Score, v.Reason */ }
//
// # Budget and cache
//
// Every call runs under a deadline of Options.Timeout (added to the
// caller's context): a slow endpoint costs at most that, and its answer
// is then an error wrapping ErrTimeout. Verdicts are cached by the SHA-256
// of the content (Options.CacheSize entries, least recently used evicted),
// so content seen again costs no call; errors are not cached.
//
// # Caveats
//
// The Judge sends what it is given: the caller decides what content
// leaves the process (detect sends the scan window, with secret-shaped
// strings redacted). A model judging text can itself be addressed by
// that text; the prompt tells it to treat the content as data, and the
// answer is only trusted as far as its shape: anything that is not a
// verdict is an error wrapping ErrMalformed, never a panic. The HTTP
// client is the package's own: no proxy from the environment, no
// redirects, TLS 1.2 or later, and the roots of Options.CAFile when set
// (never the system's as well).
package judge
