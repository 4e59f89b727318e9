package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stackctl/stack/internal/faultproxy"
)

// keyActivationDelay is how long a key rotated in the fleet is published
// before it signs: above the replicas' stale bound, short enough for a
// drill to see passports of both keys.
const keyActivationDelay = 4 * time.Second

// replica is one `stack control` of a fleet on etcd.
type replica struct {
	index int
	home  string
	addr  string // host:port, fixed so that sidecars find it again
	url   string
	proc  *process
}

// startReplicas makes the control plane of a fleet on etcd: the first
// replica starts on the initialised control home, takes the credential
// into its vault and stops; its data directory is copied for the others
// (same issuer keys, TLS certificate and vault), and all start against
// the cluster.
func (f *Fleet) startReplicas(ctx context.Context, secret string) error {
	etcd, err := f.startEtcd(ctx)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	f.etcd = etcd
	f.replicaEnv = []string{"STACK_CONTROL_STORE=etcd", "STACK_CONTROL_KEY_ACTIVATION_DELAY=" + keyActivationDelay.String()}
	// The last replica reaches etcd through fault proxies, which can cut
	// it off from the cluster (partitionLast).
	for _, ep := range etcd.endpoints() {
		link, err := faultproxy.New(strings.TrimPrefix(ep, "http://"))
		if err != nil {
			return err
		}
		f.etcdLinks = append(f.etcdLinks, link)
	}
	for i := range f.opts.Replicas {
		r := &replica{index: i, home: f.controlHome}
		if i > 0 {
			r.home = fmt.Sprintf("%s-%d", f.controlHome, i)
		}
		if r.addr, err = freePort(); err != nil {
			return err
		}
		// Fixed for the replica's life: the drill reads it while it
		// restarts the replica.
		r.url = "https://" + r.addr
		f.replicas = append(f.replicas, r)
	}
	first := f.replicas[0]
	if err := f.startReplica(ctx, first); err != nil {
		return err
	}
	if _, err := f.stack(ctx, secret, "vault", "put", credential, "--host", apiHost, "--render", "bearer"); err != nil {
		return err
	}
	if err := first.proc.stop(stopTimeout); err != nil {
		return fmt.Errorf("replica 0: %w", err)
	}
	for _, r := range f.replicas[1:] {
		if err := copyDir(first.home, r.home); err != nil {
			return err
		}
	}
	for _, r := range f.replicas {
		if err := f.startReplica(ctx, r); err != nil {
			return err
		}
	}
	f.control, f.controlURL = first.proc, first.url
	return nil
}

// startReplica starts `stack control` for r and waits for its run file.
func (f *Fleet) startReplica(ctx context.Context, r *replica) error {
	os.Remove(filepath.Join(r.home, "control.json"))
	endpoints := f.etcd.endpoints()
	if r.index == len(f.replicas)-1 && len(f.replicas) > 2 {
		endpoints = endpoints[:0]
		for _, l := range f.etcdLinks {
			endpoints = append(endpoints, "http://"+l.Addr())
		}
	}
	env := append(append([]string(nil), f.env...), f.replicaEnv...)
	env = append(env, "STACK_CONTROL_ETCD_ENDPOINTS="+strings.Join(endpoints, ","))
	p, err := startProcess(f.opts.Bin, []string{"--home", r.home, "control", "--listen", r.addr},
		env, f.opts.Dir, filepath.Join(f.logDir, fmt.Sprintf("control-%d.log", r.index)))
	if err != nil {
		return err
	}
	r.proc = p
	var run controlRun
	err = waitFor(ctx, startTimeout, 20*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("replica %d exited during start-up: %v\n%s", r.index, p.waitErr, p.logTail())
		}
		b, err := os.ReadFile(filepath.Join(r.home, "control.json"))
		if err != nil || json.Unmarshal(b, &run) != nil {
			return false, nil
		}
		return run.PID == p.pid(), nil
	})
	if err != nil {
		return fmt.Errorf("replica %d: %w", r.index, err)
	}
	if run.Listen != r.addr {
		return fmt.Errorf("replica %d listens on %s, want %s", r.index, run.Listen, r.addr)
	}
	f.logf("control replica %d %s (pid %d)", r.index, r.url, run.PID)
	return nil
}

// partitionLast cuts the last replica off from every etcd member (cut)
// or heals the links.
func (f *Fleet) partitionLast(cut bool) {
	for _, l := range f.etcdLinks {
		if cut {
			l.Partition()
		} else {
			l.Heal()
		}
	}
}

// copyDir copies the regular files under src to dst, which must not
// exist.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		info, err := in.Stat()
		if err != nil {
			return err
		}
		out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
