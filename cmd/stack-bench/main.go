// Command stack-bench is the load harness of STACK: in one run on
// loopback it starts a TLS upstream, then drives concurrent HTTPS clients
// through each target in turn (no proxy, the goproxy reference in
// bench/reference, `stack proxy` in its shipped configuration and in two
// variants, mitmdump when installed; CONNECT tunnels without
// interception; a new connection per request) and prints requests/s,
// latency percentiles, the proxy's CPU seconds and its anonymous memory
// (RssAnon, with RSS beside it) idle and at its peak, and the ratios to
// the reference and the targets. Instead of the table, --soak checks a
// long run for growth and --crash kills the proxy under load and checks
// that its audit log lost nothing the agent was answered for.
//
//	go run ./cmd/stack-bench                       # the full table
//	go run ./cmd/stack-bench --rounds 3 --clients 16,64 --json results.json
//	go run ./cmd/stack-bench --targets reference,stack --duration 5s
//	go run ./cmd/stack-bench --soak 10m            # leak and audit check
//	go run ./cmd/stack-bench --crash               # SIGKILL under load, then audit check
//
// Every process listens on 127.0.0.1 only; every wait is bounded. The
// figures are only comparable within one run: clients, upstream and proxy
// share the machine. docs/performance.md has the method and the results.
package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// The names the bench uses inside STACK's data directory.
const (
	benchHost       = "api.bench.test"
	benchAgent      = "bench-agent"
	benchCredential = "bench"
	benchPath       = "/v1/balance"
)

// allTargets is every target in the order they run: each STACK target
// right after the reference it is compared with, so both see the same
// machine.
var allTargets = []string{
	"direct", "reference", "stack", "stack-quiet", "stack-always", "stack-learned", "mitmdump",
	"reference-tunnel", "stack-tunnel",
	"reference-newconn", "stack-newconn",
	"reference-256", "stack-256",
}

// candidateTargets measure the --candidate build as stack and stack-256
// measure the stack build.
var candidateTargets = []string{"candidate", "candidate-256", "candidate-learned"}

// options are the command-line flags.
type options struct {
	stackBin string
	// candidateBin, when set, is measured by the candidate target.
	candidateBin string
	refBin       string
	mitmdump     string
	targets      []string
	// clients are the client counts the keep-alive MITM targets run at,
	// each a row of its own; the other targets run at the first.
	clients     []int
	rssClients  int
	duration    time.Duration
	warmup      time.Duration
	respSize    int
	respBody    string // json or text
	jsonOut     string
	soak        time.Duration
	crash       bool
	crashRounds int
	crashAfter  time.Duration
	keep        bool
	rounds      int
	rate        int
	profileDir  string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stack-bench:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("stack-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.stackBin, "stack", "", "stack binary to measure (default: go build ./cmd/stack)")
	fs.StringVar(&o.candidateBin, "candidate", "", "a second stack binary, measured by the targets \"candidate\" and \"candidate-256\" exactly as \"stack\" and \"stack-256\" are, to compare two builds in one run (e.g. --targets stack,candidate --rounds 5)")
	fs.StringVar(&o.refBin, "reference", "", "reference proxy binary (default: go build ./bench/reference)")
	fs.StringVar(&o.mitmdump, "mitmdump", "", "mitmdump to compare with (default: from PATH; skipped when absent)")
	targets := fs.String("targets", strings.Join(allTargets, ","), "comma-separated targets to run")
	clients := fs.String("clients", "32", "concurrent keep-alive clients, each with its own Transport and connection; a comma-separated list runs each keep-alive MITM target at every count (rows named TARGET@N), the other targets at the first")
	fs.IntVar(&o.rssClients, "rss-clients", 256, "clients of the *-256 targets (peak memory under many connections)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per target")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up per target")
	fs.IntVar(&o.respSize, "resp-size", 512, "bytes in the upstream's answer")
	fs.StringVar(&o.respBody, "resp-body", "json", "the upstream's answer: json (a small API answer, padded to --resp-size with one long string) or text (text/plain prose, words all the way, as a fetched document)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results to this JSON file")
	fs.DurationVar(&o.soak, "soak", 0, "instead of the table, run steady load through stack for this long and check for growth and lost audit records")
	fs.BoolVar(&o.crash, "crash", false, "instead of the table, kill stack proxy (SIGKILL) under load and check that every request answered before the kill has its credential_access and request records and that the audit chain verifies")
	fs.IntVar(&o.crashRounds, "crash-rounds", 3, "crash rounds, each killing a fresh proxy at a different moment")
	fs.DurationVar(&o.crashAfter, "crash-after", 3*time.Second, "load time before the last round's kill; round i of N kills after i/N of it")
	fs.IntVar(&o.rate, "soak-rate", 500, "requests/s the soak's clients send in total (0: as fast as they can)")
	fs.IntVar(&o.rounds, "rounds", 1, "run the target list this many times, interleaved, and report each target's median round by requests/s")
	fs.StringVar(&o.profileDir, "profile", "", "write CPU and allocation profiles of each STACK target's measured window (and a CPU profile of each reference run) to this directory, for go tool pprof")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, data directory) and print its path")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if o.respBody != "json" && o.respBody != "text" {
		return o, fmt.Errorf("%w: --resp-body: %q is neither json nor text", errUsage, o.respBody)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	for c := range strings.SplitSeq(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 || n > 4096 {
			return o, fmt.Errorf("%w: --clients: %q is not a count between 1 and 4096", errUsage, c)
		}
		if slices.Contains(o.clients, n) {
			return o, fmt.Errorf("%w: --clients: %d twice", errUsage, n)
		}
		o.clients = append(o.clients, n)
	}
	for t := range strings.SplitSeq(*targets, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !knownTarget(t) {
			return o, fmt.Errorf("%w: unknown target %q (known: %s, and %s with --candidate)", errUsage, t, strings.Join(allTargets, ", "), strings.Join(candidateTargets, ", "))
		}
		o.targets = append(o.targets, t)
	}
	switch {
	case slices.ContainsFunc(o.targets, func(t string) bool { return slices.Contains(candidateTargets, t) }) != (o.candidateBin != ""):
		return o, fmt.Errorf("%w: the candidate targets and --candidate go together", errUsage)
	case o.rssClients <= 0 || o.rssClients > 4096:
		return o, fmt.Errorf("%w: --rss-clients must be between 1 and 4096", errUsage)
	case (o.soak > 0 || o.crash) && len(o.clients) > 1:
		return o, fmt.Errorf("%w: --soak and --crash run at one --clients count", errUsage)
	case o.soak > 0 && o.crash:
		return o, fmt.Errorf("%w: --soak and --crash are separate runs", errUsage)
	case o.crashRounds < 1 || o.crashRounds > 100:
		return o, fmt.Errorf("%w: --crash-rounds must be between 1 and 100", errUsage)
	case o.crashAfter < 100*time.Millisecond || o.crashAfter > 10*time.Minute:
		return o, fmt.Errorf("%w: --crash-after must be between 100ms and 10m", errUsage)
	case o.duration <= 0 || o.duration > time.Hour:
		return o, fmt.Errorf("%w: --duration must be positive and at most 1h", errUsage)
	case o.warmup < 0 || o.warmup > 10*time.Minute:
		return o, fmt.Errorf("%w: --warmup must be between 0 and 10m", errUsage)
	case o.soak < 0 || o.soak > 50*time.Minute:
		// Passports live at most an hour.
		return o, fmt.Errorf("%w: --soak must be at most 50m", errUsage)
	case o.rate < 0 || o.rate > 1_000_000:
		return o, fmt.Errorf("%w: --soak-rate must be between 0 and 1000000", errUsage)
	case o.rounds < 1 || o.rounds > 20:
		return o, fmt.Errorf("%w: --rounds must be between 1 and 20", errUsage)
	case o.respSize < 0 || o.respSize > 64<<20:
		return o, fmt.Errorf("%w: --resp-size must be between 0 and 64 MiB", errUsage)
	}
	return o, nil
}

func knownTarget(t string) bool {
	return slices.Contains(candidateTargets, t) || slices.Contains(allTargets, t)
}

// bench is one run's shared state.
type bench struct {
	opts     options
	stdout   io.Writer
	stderr   io.Writer
	work     string
	stackBin string
	// candidateBin is the candidate target's binary; "" without one.
	candidateBin string
	refBin       string
	mitmdump     string

	up        *upstream
	upCAFile  string
	upRoots   *x509.CertPool
	stackHome string
	stackCA   *x509.CertPool
	token     string
	refCAFile string
	refRoots  *x509.CertPool
	mitmRoots *x509.CertPool
	runs      int // targets run so far, naming each run's audit log
	// noSyncAlways, when set, is why stack-always is skipped.
	noSyncAlways string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.profileDir != "" {
		// The reference writes its own profile and cannot create the directory.
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "stack-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(stderr, "work directory: %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	b := &bench{opts: o, stdout: stdout, stderr: stderr, work: work}
	if err := b.setup(ctx); err != nil {
		return err
	}
	defer b.up.close()
	if o.soak > 0 {
		return b.runSoak(ctx)
	}
	if o.crash {
		return b.runCrash(ctx)
	}
	runs := expandRuns(o.targets, o.clients)
	rep := report{Machine: machineInfo(), Clients: o.clients, RSSClients: o.rssClients, Rounds: o.rounds,
		Duration: o.duration.String(), Warmup: o.warmup.String(), RespSize: o.respSize, RespBody: o.respBody, Started: time.Now().UTC()}
	byRun := map[string][]result{}
	for round := 1; round <= o.rounds; round++ {
		for _, r := range runs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(stderr, "round %d/%d: %s ...\n", round, o.rounds, r.Name)
			res := b.runTarget(ctx, r)
			if res.Skipped != "" {
				fmt.Fprintf(stderr, "  skipped: %s\n", res.Skipped)
			} else {
				fmt.Fprintf(stderr, "  %.0f req/s, p99 %.2f ms, errors %d\n", res.RPS, res.P99MS, res.Errors)
			}
			byRun[r.Name] = append(byRun[r.Name], res)
			rep.AllRounds = append(rep.AllRounds, res)
		}
	}
	for _, r := range runs {
		rep.Results = append(rep.Results, medianRound(byRun[r.Name]))
	}
	rep.Ratios = append(ratios(rep.Results), roundRatios(runs, byRun)...)
	rep.print(stdout)
	if o.jsonOut != "" {
		if err := writeJSON(o.jsonOut, rep); err != nil {
			return err
		}
	}
	return nil
}

// benchRun is one target at one client count: a row of the table.
type benchRun struct {
	// Name is the target's, followed by @CLIENTS when the keep-alive
	// targets run at several counts.
	Name    string
	Target  string
	Clients int
}

// perCount reports whether target runs at every --clients count: the
// keep-alive MITM targets, whose throughput is compared at each.
func perCount(target string) bool {
	proxy, variant := splitTarget(target)
	switch proxy {
	case "reference", "stack", "candidate", "mitmdump":
		return variant == "" || variant == "quiet" || variant == "always" || variant == "learned"
	}
	return false
}

// expandRuns lists the runs of one round: each run of consecutive
// per-count targets at the first count, then at the next, and so on, so
// that a STACK target still runs right after its reference at the same
// count; the other targets at the first count.
func expandRuns(targets []string, counts []int) []benchRun {
	var out []benchRun
	for i := 0; i < len(targets); {
		if !perCount(targets[i]) {
			out = append(out, benchRun{Name: targets[i], Target: targets[i], Clients: counts[0]})
			i++
			continue
		}
		j := i
		for j < len(targets) && perCount(targets[j]) {
			j++
		}
		for _, n := range counts {
			for _, t := range targets[i:j] {
				name := t
				if len(counts) > 1 {
					name = fmt.Sprintf("%s@%d", t, n)
				}
				out = append(out, benchRun{Name: name, Target: t, Clients: n})
			}
		}
		i = j
	}
	return out
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}

// setup builds the binaries, starts the upstream and prepares STACK's
// data directory: init, the bench credential, a passport, the CA.
func (b *bench) setup(ctx context.Context) error {
	var err error
	b.stackBin, err = b.binary(ctx, b.opts.stackBin, "./cmd/stack", "stack")
	if err != nil {
		return err
	}
	if b.needsReference() {
		b.refBin, err = b.binary(ctx, b.opts.refBin, "./bench/reference", "reference")
		if err != nil {
			return err
		}
	}
	if b.opts.candidateBin != "" {
		if b.candidateBin, err = filepath.Abs(b.opts.candidateBin); err != nil {
			return err
		}
		if _, err := os.Stat(b.candidateBin); err != nil {
			return fmt.Errorf("--candidate: %w", err)
		}
	}
	b.mitmdump = b.opts.mitmdump
	if b.mitmdump == "" {
		b.mitmdump, _ = exec.LookPath("mitmdump")
	}
	secret := "sk_bench_" + randomHex(16)
	b.up, err = startUpstream(benchHost, b.opts.respSize, b.opts.respBody == "text", secret)
	if err != nil {
		return err
	}
	b.upCAFile = filepath.Join(b.work, "upstream-ca.pem")
	if err := os.WriteFile(b.upCAFile, b.up.ca.CertPEM(), 0o600); err != nil {
		return err
	}
	b.upRoots = x509.NewCertPool()
	b.upRoots.AppendCertsFromPEM(b.up.ca.CertPEM())
	b.refCAFile = filepath.Join(b.work, "reference-ca.pem")

	b.stackHome = filepath.Join(b.work, "home")
	env := b.stackEnv("")
	if _, err := runCmd("", env, b.stackBin, "--home", b.stackHome, "init"); err != nil {
		return err
	}
	if _, err := runCmd(secret, env, b.stackBin, "--home", b.stackHome, "vault", "put", benchCredential,
		"--host", benchHost, "--render", "bearer"); err != nil {
		return err
	}
	ttl := "1h"
	tok, err := runCmd("", env, b.stackBin, "--home", b.stackHome, "passport", "issue", "--agent", benchAgent,
		"--ttl", ttl, "--grant", "host="+benchHost+",methods=GET,paths=/v1/**,credentials="+benchCredential)
	if err != nil {
		return err
	}
	b.token = strings.TrimSpace(tok)
	pem, err := runCmd("", env, b.stackBin, "--home", b.stackHome, "ca", "export")
	if err != nil {
		return err
	}
	b.stackCA = x509.NewCertPool()
	if !b.stackCA.AppendCertsFromPEM([]byte(pem)) {
		return errors.New("stack ca export printed no certificate")
	}
	if b.opts.soak == 0 && !b.opts.crash && slices.Contains(b.opts.targets, "stack-always") {
		b.noSyncAlways, err = b.checkSyncAlways()
		if err != nil {
			return err
		}
	}
	return nil
}

// needsReference reports whether a target runs the reference proxy.
func (b *bench) needsReference() bool {
	if b.opts.soak > 0 || b.opts.crash {
		return false
	}
	return slices.ContainsFunc(b.opts.targets, func(t string) bool {
		p, _ := splitTarget(t)
		return p == "reference"
	})
}

// checkSyncAlways asks the stack build for its effective configuration
// with syncAlways set and returns why the stack-always target cannot
// run, or "" when it can: a build without the audit.sync setting ignores
// the variable, and the target would measure the default instead.
func (b *bench) checkSyncAlways() (string, error) {
	out, err := runCmd("", append(b.stackEnv(""), syncAlways), b.stackBin, "--home", b.stackHome, "config", "show")
	if err != nil {
		return "", err
	}
	return syncAlwaysMissing(out)
}

// syncAlwaysMissing reads the output of `stack config show`: "" when
// audit.sync is always, else why stack-always cannot run.
func syncAlwaysMissing(configShow string) (string, error) {
	var cfg struct {
		Audit map[string]any `yaml:"audit"`
	}
	if err := yaml.Unmarshal([]byte(configShow), &cfg); err != nil {
		return "", fmt.Errorf("stack config show: %w", err)
	}
	if cfg.Audit == nil {
		return "", errors.New("stack config show: no audit section")
	}
	if v, ok := cfg.Audit["sync"]; !ok || v != "always" {
		return "this stack build has no audit.sync setting (" + syncAlways + " is ignored)", nil
	}
	return "", nil
}

// binary returns given, or builds pkg from the module root into the work
// directory.
func (b *bench) binary(ctx context.Context, given, pkg, name string) (string, error) {
	if given != "" {
		return filepath.Abs(given)
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the module: pass --%s BIN or run from the repository", name)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	bin := filepath.Join(b.work, name)
	fmt.Fprintf(b.stderr, "building %s ...\n", pkg)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

func randomHex(n int) string {
	raw := make([]byte, n)
	rand.Read(raw)
	return hex.EncodeToString(raw)
}

// proxyURL is the URL the clients use for a proxy at addr, carrying the
// passport as Basic user info (agent id : passport).
func (b *bench) proxyURL(addr string) *url.URL {
	return &url.URL{Scheme: "http", Host: addr, User: url.UserPassword(benchAgent, b.token)}
}

func (b *bench) targetURL() string {
	return "https://" + benchHost + ":" + b.up.port() + benchPath
}

// placeholderHeader is what an agent sends where the API key would go.
func placeholderHeader() http.Header {
	return http.Header{"Authorization": {"Bearer stk_ph_" + benchCredential}}
}
