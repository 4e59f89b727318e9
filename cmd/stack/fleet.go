package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"k8s.io/klog/v2"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/fleet"
	"github.com/stackctl/stack/control/fleetlog"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault/kms"
)

// fleetKeyFlags say where the fleet log's public key comes from: given, or
// asked of the control plane (over TLS verified with its CA).
type fleetKeyFlags struct{ key, file string }

func (f *fleetKeyFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.key, "fleet-key", "", "the fleet log's public note key (name+hash+base64, from `stack control fleet-key`); default: ask the control plane")
	cmd.Flags().StringVar(&f.file, "fleet-key-file", "", "a file holding the fleet log's public note key")
}

func (f *fleetKeyFlags) resolve(ctx context.Context, a *app) (string, error) {
	switch {
	case f.key != "" && f.file != "":
		return "", usageError(errors.New("give one of --fleet-key and --fleet-key-file"))
	case f.key != "":
		return strings.TrimSpace(f.key), nil
	case f.file != "":
		b, err := os.ReadFile(f.file)
		if err != nil {
			return "", fmt.Errorf("--fleet-key-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	c, err := a.controlAPI(ctx, true)
	if err != nil {
		return "", err
	}
	var k control.FleetKeyResponse
	if err := c.do(ctx, http.MethodGet, control.PathFleetKey, nil, &k); err != nil {
		return "", err
	}
	return k.Key, nil
}

func newAuditProveCmd(a *app) *cobra.Command {
	var (
		keys   fleetKeyFlags
		asJSON bool
		check  string
	)
	cmd := &cobra.Command{
		Use:   "prove EVENT_ID",
		Short: "Prove that a record is in the fleet audit log (inclusion proof and checkpoint)",
		Long: `Prove asks the control plane for the inclusion proof of the record with
EVENT_ID in the fleet audit log, and checks it offline with the fleet log's
public key: the checkpoint's signature, the Merkle path from the leaf to
the checkpoint's root, and that the leaf holds the record shown.

--json prints the proof bundle (leaf, index, hashes, signed checkpoint,
record) for keeping or passing on; --verify FILE checks a saved bundle
with nothing but the key, no control plane needed. The formats are the
C2SP ones (tlog-tiles, signed-note checkpoints); docs/fleet-log.md shows
how to check a proof with the transparency-dev libraries alone.`,
		Example: `  stack audit prove 6f1c2a9e-0d4b-4c1e-9f4e-2b7d1c0a9e11
  stack audit prove 6f1c2a9e-0d4b-4c1e-9f4e-2b7d1c0a9e11 --json > proof.json
  stack audit prove --verify proof.json --fleet-key "$(cat fleet.pub)"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if check != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var p fleet.Proof
			if check != "" {
				b, err := os.ReadFile(check)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(b, &p); err != nil {
					return fmt.Errorf("%s: not a proof bundle: %w", check, err)
				}
			} else {
				c, err := a.controlAPI(ctx, true)
				if err != nil {
					return err
				}
				if err := c.do(ctx, http.MethodGet, control.PathFleetProve+"?event="+url.QueryEscape(args[0]), nil, &p); err != nil {
					return err
				}
			}
			key, err := keys.resolve(ctx, a)
			if err != nil {
				return err
			}
			rec, err := fleet.VerifyProof(key, p)
			if err != nil {
				fmt.Fprintf(a.stdout, "FAIL: %v\n", err)
				return exitWith(exitFailure, "")
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(p)
			}
			fmt.Fprintf(a.stdout, "ok: event %s is leaf %d of the fleet log of size %d\n", rec.EventID, p.Index, p.Size)
			fmt.Fprintf(a.stdout, "record:     seq %d of log %s (sidecar %s): %s\n", rec.Seq, p.Item.Log, p.Item.Sidecar, describeRecord(&rec))
			fmt.Fprintf(a.stdout, "checkpoint: size %d, signature verified with %s\n", p.Size, fleet.KeyName(key))
			return nil
		},
	}
	keys.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the verified proof bundle as JSON")
	cmd.Flags().StringVar(&check, "verify", "", "check a saved proof bundle (from --json) offline instead of asking the control plane")
	return cmd
}

// describeRecord is one line saying what a record is.
func describeRecord(r *audit.Record) string {
	parts := []string{formatMS(r.TimestampMS), r.Action}
	if r.AgentID != "" {
		parts = append(parts, "agent "+r.AgentID)
	}
	if r.Host != "" {
		parts = append(parts, strings.TrimSpace(r.Method+" "+r.Host+r.Path))
	}
	if o := outcome(r); o != "-" {
		parts = append(parts, o)
	}
	return strings.Join(parts, ", ")
}

// verifyFleet checks the fleet log's newest checkpoint and, given an older
// one, that the log still holds everything it committed to.
func (a *app) verifyFleet(ctx context.Context, keys fleetKeyFlags, since, save string) error {
	key, err := keys.resolve(ctx, a)
	if err != nil {
		return err
	}
	c, err := a.controlAPI(ctx, true)
	if err != nil {
		return err
	}
	var older []byte
	var from uint64
	if since != "" {
		if older, err = os.ReadFile(since); err != nil {
			return fmt.Errorf("--since: %w", err)
		}
		cons, err := parseFleetCheckpointSize(key, older)
		if err != nil {
			fmt.Fprintf(a.stdout, "FAIL: --since %s: %v\n", since, err)
			return exitWith(exitFailure, "")
		}
		from = cons
	}
	var cons fleet.Consistency
	if err := c.do(ctx, http.MethodGet, fmt.Sprintf("%s?from=%d", control.PathFleetConsistency, from), nil, &cons); err != nil {
		return err
	}
	size, err := parseFleetCheckpointSize(key, cons.Checkpoint)
	if err != nil || size != cons.To {
		fmt.Fprintf(a.stdout, "FAIL: the fleet log's checkpoint: %v\n", orMismatch(err, size, cons.To))
		return exitWith(exitFailure, "")
	}
	if older != nil {
		if _, err := fleet.VerifyConsistency(key, older, cons); err != nil {
			fmt.Fprintf(a.stdout, "FAIL: the fleet log of size %d is not an extension of the checkpoint of size %d: %v\n", cons.To, from, err)
			return exitWith(exitFailure, "")
		}
		fmt.Fprintf(a.stdout, "ok: the fleet log grew from %d to %d leaves and still holds every leaf of %s unchanged\n", from, cons.To, since)
	} else {
		fmt.Fprintf(a.stdout, "ok: the fleet log's checkpoint of size %d is signed by %s\n", cons.To, fleet.KeyName(key))
	}
	if save != "" {
		if err := os.WriteFile(save, cons.Checkpoint, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "saved the checkpoint to %s: pass it as --since next time\n", save)
	}
	return nil
}

func orMismatch(err error, got, want uint64) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("signed size %d, answered size %d", got, want)
}

func parseFleetCheckpointSize(key string, ck []byte) (uint64, error) {
	c, err := fleetlog.ParseCheckpoint(key, ck)
	if err != nil {
		return 0, err
	}
	return c.Size, nil
}

// fleetRecords streams the control plane's fleet export for the filter,
// ordered by time across all sidecars.
func (a *app) fleetRecords(ctx context.Context, f audit.Filter, fn func(fleet.Item) error) error {
	c, err := a.controlAPI(ctx, true)
	if err != nil {
		return err
	}
	q := url.Values{}
	if f.AgentID != "" {
		q.Set("agent", f.AgentID)
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	resp, err := c.send(ctx, http.MethodGet, control.PathFleetExport+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var line struct {
			fleet.Item
			Error string `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("fleet export: %w", err)
		}
		if line.Error != "" {
			return fmt.Errorf("fleet export ended early: %s", line.Error)
		}
		if !f.Match(&line.Record) {
			continue
		}
		if err := fn(line.Item); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("fleet export: %w", err)
	}
	return nil
}

// fleetKeysFile keeps the fleet log's signing key, wrapped by the KMS.
const fleetKeysFile = "fleet-log.keys"

// fleetParts are the fleet audit log and its witness, when
// control.fleet_log is set.
type fleetParts struct {
	log     *fleetlog.Log
	witness *fleet.Witness
	key     string // the public note key
}

// openFleet opens the fleet log in control.fleet_log, signing with the
// fleet key (made, KMS-wrapped, on first use), and its witness, whose
// findings go to onFinding and whose committed records to onCommitted. It
// returns nil parts when the fleet log is off.
func (a *app) openFleet(ctx context.Context, k kms.KMS, onFinding func(fleet.Stream, fleet.Finding), onCommitted func([]fleet.Item)) (*fleetParts, error) {
	dir := a.cfg.Control.FleetLog
	if dir == "" {
		return nil, nil
	}
	path := filepath.Join(a.home(), fleetKeysFile)
	ks, err := passport.LoadKeySet(ctx, path, k)
	if errors.Is(err, fs.ErrNotExist) {
		if ks, err = passport.GenerateKeySet(time.Now()); err == nil {
			err = ks.Save(ctx, path, k)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("the fleet log's key (%s): %w", path, err)
	}
	signer, err := newNoteSigner(fleetlog.DefaultOrigin, currentKey(ks))
	if err != nil {
		return nil, err
	}
	key, err := signer.VerifierKey()
	if err != nil {
		return nil, err
	}
	quietTessera(a.log.Named("fleetlog"))
	tree, err := fleetlog.Open(ctx, fleetlog.Options{Dir: filepath.Join(dir, "log"), Signer: signer})
	if err != nil {
		return nil, fmt.Errorf("control.fleet_log %s: %w", dir, err)
	}
	w, err := fleet.Open(ctx, fleet.Options{Dir: dir, Tree: tree, Signer: signer, OnFinding: onFinding, OnCommitted: onCommitted})
	if err != nil {
		tree.Close(ctx)
		return nil, fmt.Errorf("control.fleet_log %s: %w", dir, err)
	}
	a.onClose(func() error {
		err := w.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return errors.Join(err, tree.Close(cctx))
	})
	return &fleetParts{log: tree, witness: w, key: key}, nil
}

// tesseraLog is where tessera's klog lines go: klog's logger is one per
// process, set once; the zap logger behind it is the latest control
// plane's.
var (
	tesseraLog     atomic.Pointer[zap.Logger]
	tesseraLogOnce sync.Once
)

// quietTessera sends what tessera logs through klog to our log: its
// progress lines at debug, its errors at warn, never raw on stderr.
func quietTessera(log *zap.Logger) {
	tesseraLog.Store(log)
	tesseraLogOnce.Do(func() {
		klog.SetLogger(funcr.New(func(prefix, args string) {
			log := tesseraLog.Load()
			if strings.Contains(args, `"error"=`) {
				log.Warn(args, zap.String("logger", prefix))
				return
			}
			log.Debug(args, zap.String("logger", prefix))
		}, funcr.Options{}))
	})
}

func newControlFleetKeyCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "fleet-key",
		Short: "Print the fleet audit log's public key (for offline proofs)",
		Long: `fleet-key prints the public note key ("name+hash+base64") the fleet audit
log's checkpoints and its cosignatures of sidecar checkpoints verify with.
With it, anyone checks a proof from ` + "`stack audit prove`" + ` or a consistency
proof from ` + "`stack audit verify --fleet`" + ` without trusting the control
plane. It reads the key from this data directory when the fleet log was
made here, else asks the control plane.`,
		Example: `  stack control fleet-key > fleet.pub
  stack audit prove --verify proof.json --fleet-key-file fleet.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			path := filepath.Join(a.home(), fleetKeysFile)
			if _, err := os.Stat(path); err == nil {
				k, err := a.openKMS(ctx)
				if err != nil {
					return err
				}
				ks, err := passport.LoadKeySet(ctx, path, k)
				if err != nil {
					return err
				}
				signer, err := newNoteSigner(fleetlog.DefaultOrigin, currentKey(ks))
				if err != nil {
					return err
				}
				key, err := signer.VerifierKey()
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, key)
				return nil
			}
			key, err := (&fleetKeyFlags{}).resolve(ctx, a)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, key)
			return nil
		},
	}
}
