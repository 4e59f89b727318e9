package fleet

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EtcdMemberCommand is the first argument with which the binary given as
// Options.EtcdBin runs one etcd member (EtcdMemberMain).
const EtcdMemberCommand = "etcd-member"

// EtcdMemberMain runs one member of an etcd cluster in this process until
// SIGTERM or SIGINT; args are those after EtcdMemberCommand. The failover
// scenario runs each member as a child process of its own, so that it
// can SIGKILL the leader as an outage would.
func EtcdMemberMain(args []string) error {
	fs := flag.NewFlagSet(EtcdMemberCommand, flag.ContinueOnError)
	name := fs.String("name", "", "member name")
	dir := fs.String("dir", "", "data directory")
	peer := fs.String("peer", "", "peer URL")
	client := fs.String("client", "", "client URL")
	initial := fs.String("initial-cluster", "", "NAME=PEER_URL,...")
	state := fs.String("state", embed.ClusterStateFlagNew, "new or existing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pu, err := url.Parse(*peer)
	if err != nil {
		return err
	}
	cu, err := url.Parse(*client)
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = *name, *dir
	cfg.InitialCluster, cfg.InitialClusterToken, cfg.ClusterState = *initial, "stack-fleet", *state
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
		fmt.Println("ready")
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
	select {
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
}

// etcdMember is one member of the fleet's etcd cluster, a child process.
type etcdMember struct {
	name, dir, peer, client string
	proc                    *process
}

// etcdCluster is the fleet's etcd: three members as child processes of
// Options.EtcdBin.
type etcdCluster struct {
	f       *Fleet
	initial string
	members []*etcdMember
}

// startEtcd starts a 3-member cluster and waits until it answers.
func (f *Fleet) startEtcd(ctx context.Context) (*etcdCluster, error) {
	c := &etcdCluster{f: f}
	var initial []string
	for i := range 3 {
		peer, err := freePort()
		if err != nil {
			return nil, err
		}
		client, err := freePort()
		if err != nil {
			return nil, err
		}
		m := &etcdMember{name: fmt.Sprintf("etcd%d", i), peer: "http://" + peer, client: "http://" + client}
		m.dir = filepath.Join(f.opts.Dir, m.name)
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	c.initial = strings.Join(initial, ",")
	for _, m := range c.members {
		if err := c.start(m, embed.ClusterStateFlagNew); err != nil {
			c.close()
			return nil, err
		}
	}
	if err := c.waitHealthy(ctx); err != nil {
		c.close()
		return nil, err
	}
	f.logf("etcd: 3 members at %s", strings.Join(c.endpoints(), ","))
	return c, nil
}

func (c *etcdCluster) start(m *etcdMember, state string) error {
	p, err := startProcess(c.f.opts.EtcdBin, []string{EtcdMemberCommand,
		"-name", m.name, "-dir", m.dir, "-peer", m.peer, "-client", m.client,
		"-initial-cluster", c.initial, "-state", state},
		c.f.env, c.f.opts.Dir, filepath.Join(c.f.logDir, m.name+".log"))
	if err != nil {
		return err
	}
	m.proc = p
	return nil
}

// restart starts a killed member again on its data directory.
func (c *etcdCluster) restart(m *etcdMember) error {
	if _, err := os.Stat(filepath.Join(m.dir, "member")); err != nil {
		return fmt.Errorf("etcd member %s has no data to restart from: %w", m.name, err)
	}
	return c.start(m, embed.ClusterStateFlagExisting)
}

func (c *etcdCluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.client)
	}
	return eps
}

// waitHealthy waits until every member answers a quorum read.
func (c *etcdCluster) waitHealthy(ctx context.Context) error {
	return waitFor(ctx, startTimeout, 200*time.Millisecond, func() (bool, error) {
		for _, m := range c.members {
			if m.proc.exited() {
				return false, fmt.Errorf("etcd member %s exited: %v\n%s", m.name, m.proc.waitErr, m.proc.logTail())
			}
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.client}, DialTimeout: time.Second, Logger: zap.NewNop()})
			if err != nil {
				return false, nil
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err = cli.Get(rctx, "health")
			cancel()
			cli.Close()
			if err != nil {
				return false, nil
			}
		}
		return true, nil
	})
}

// leader returns the member that leads the cluster now.
func (c *etcdCluster) leader(ctx context.Context) (*etcdMember, error) {
	var lead *etcdMember
	err := waitFor(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
		for _, m := range c.members {
			if m.proc.exited() {
				continue
			}
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.client}, DialTimeout: time.Second, Logger: zap.NewNop()})
			if err != nil {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cli.Status(rctx, m.client)
			cancel()
			cli.Close()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				lead = m
				return true, nil
			}
		}
		return false, nil
	})
	if lead == nil && err == nil {
		err = errors.New("etcd: no leader")
	}
	return lead, err
}

func (c *etcdCluster) close() {
	for _, m := range c.members {
		if m.proc != nil && !m.proc.exited() {
			m.proc.stop(stopTimeout)
		}
	}
}
