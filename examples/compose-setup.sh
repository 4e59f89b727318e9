#!/bin/sh
# The one-shot steps of docker-compose.yml: what an operator types to set
# up a control plane and two sidecars (README.md here), so that
# `docker compose up` is the whole walkthrough. Every step can run again:
# a second `up` keeps what exists and only makes fresh join tokens.
#
#   compose-setup.sh init     data directories and CA exports (service init)
#   compose-setup.sh enroll   agents, the vault, join tokens (service enroll)
#
# With docker-compose.handoff.yml the scraper and drafter sidecars' data
# directories are mounted too: then both steps set up those agents as
# well, and enroll stores the findings/v1 schema they hand off with.
set -eu

# The binary in the image's build stage, and where compose mounts the
# volumes. Both can be moved to run this outside compose, as the examples'
# test does.
stack=${STACK_BIN:-/out/stack}
data=${SETUP_ROOT:-}/data
certs=${SETUP_ROOT:-}/export

case "${1:-}" in
init)
	# The control plane's data directory (issuer key, vault, control CA,
	# operator token) and each sidecar's own: its interception CA and the
	# key that signs its audit log. A joined sidecar holds no issuer key
	# of the fleet and no vault.
	"$stack" init --control --dir "$data/control"
	"$stack" init --dir "$data/bot"
	"$stack" init --dir "$data/reporter"
	for extra in scraper drafter; do
		[ -d "$data/$extra" ] || continue
		"$stack" init --dir "$data/$extra"
		"$stack" --home "$data/$extra" ca export >"$certs/$extra-ca/ca.pem"
		if [ "$(id -u)" = 0 ]; then chown -R 65532:65532 "$data/$extra"; fi
		chmod 0700 "$data/$extra"
	done

	# The certificates others trust: the control plane's CA for the
	# sidecars, each sidecar's interception CA for its agent.
	"$stack" --home "$data/control" control ca export >"$certs/control-ca/ca.pem"
	"$stack" --home "$data/bot" ca export >"$certs/bot-ca/ca.pem"
	"$stack" --home "$data/reporter" ca export >"$certs/reporter-ca/ca.pem"
	chmod 0644 "$certs"/*/ca.pem

	# Fresh volumes belong to root; STACK runs as 65532.
	if [ "$(id -u)" = 0 ]; then
		chown -R 65532:65532 "$data/control" "$data/bot" "$data/reporter"
	fi
	chmod 0700 "$data/control" "$data/bot" "$data/reporter"
	;;

enroll)
	# STACK_HOME is the control plane's data directory, read-only: the CLI
	# takes the operator token and the control CA from it, and sends
	# every command to STACK_CONTROL_URL.
	: "${STRIPE_SECRET_KEY:?export STRIPE_SECRET_KEY before docker compose up (any value works with the stand-in upstream)}"

	"$stack" agent show billing-bot >/dev/null 2>&1 ||
		"$stack" agent register billing-bot \
			--grant 'host=api.stripe.com,methods=GET|POST,paths=/v1/balance|/v1/charges,credentials=stripe'
	"$stack" agent show billing-reporter >/dev/null 2>&1 ||
		"$stack" agent register billing-reporter --role billing-reporter
	"$stack" vault put stripe --host api.stripe.com --render bearer --from-env STRIPE_SECRET_KEY --if-absent

	# The handoff example: the scraper may hand findings/v1 payloads to the
	# drafter, and nothing else; the drafter may only receive.
	pairs="bot:billing-bot reporter:billing-reporter"
	if [ -d "$data/scraper" ] && [ -d "$data/drafter" ]; then
		"$stack" agent show scraper >/dev/null 2>&1 ||
			"$stack" agent register scraper --grant 'handoff-to=drafter,handoff-schemas=findings/v1'
		"$stack" agent show drafter >/dev/null 2>&1 ||
			"$stack" agent register drafter --grant 'host=api.openai.com,methods=POST,paths=/v1/chat/completions,credentials=openai'
		"$stack" handoff schema put findings/v1 "${HANDOFF_SCHEMA_FILE:-/findings.schema.json}"
		pairs="$pairs scraper:scraper drafter:drafter"
	fi

	# A fresh one-time join token for each sidecar, in its data directory.
	# A sidecar that has joined before resumes with its credential and
	# leaves the token to expire unused.
	umask 077
	for pair in $pairs; do
		dir=$data/${pair%%:*} agent=${pair#*:}
		token=$("$stack" control join-token --agent "$agent")
		printf '%s\n' "$token" >"$dir/join-token.new"
		mv "$dir/join-token.new" "$dir/join-token"
		echo "join token for $agent written to $dir/join-token"
	done
	;;

*)
	echo "usage: $0 init|enroll" >&2
	exit 2
	;;
esac
