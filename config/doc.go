// Package config loads, defaults and validates the one typed Config of a
// STACK sidecar and its CLI.
//
// Values come from, in rising precedence: the defaults in this package,
// the YAML file ($STACK_HOME/stack.yaml or --config), STACK_* environment
// variables (proxy.admin_listen is STACK_PROXY_ADMIN_LISTEN; lists are
// comma-separated), and command-line flags that were set.
//
// A key the file sets but nothing reads is an error, so a typo never goes
// unnoticed. Every problem (unknown keys, values that do not decode,
// values that are not allowed) is reported at once, naming the key, what
// is allowed, and where the value came from. Config holds paths to secrets (key files, the vault),
// never secrets.
package config
