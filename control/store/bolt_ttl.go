package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Keys that expire: expiry maps a key to its deadline (big-endian Unix
// nanoseconds); expiring holds deadline+key with no value, so that the
// sweeper finds the next deadline with one seek.
var (
	bucketExpiry   = []byte("expiry")
	bucketExpiring = []byte("expiring")
)

const (
	// sweepBatch bounds the expired keys one transaction deletes, so a
	// burst of expiries does not hold the write lock long.
	sweepBatch = 256
	// sweepRetry is how long the sweeper waits after a failed sweep.
	// Readers already skip expired keys, so a late sweep only delays the
	// delete event.
	sweepRetry = time.Second
)

// Create sets key only if it does not exist and deletes it once ttl has
// passed. The deadline is kept in the file: a key that expires while no
// process holds the file is gone when it is opened again.
func (s *Bolt) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("store: create %q: %w, not %s", key, ErrInvalidTTL, ttl)
	}
	if value == nil {
		value = []byte{}
	}
	rev, err := s.change(ctx, key, time.Now().Add(ttl), func(cur KV, ok bool) ([]byte, error) {
		if ok {
			return nil, fmt.Errorf("%w: key exists at revision %d", ErrConflict, cur.ModRev)
		}
		return value, nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: create %q: %w", key, err)
	}
	// The new deadline may come before the one the sweeper waits for.
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return rev, nil
}

func initExpiry(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bucketExpiry); err != nil {
		return err
	}
	_, err := tx.CreateBucketIfNotExists(bucketExpiring)
	return err
}

// expired says whether key has a deadline that is not after now.
func expired(tx *bolt.Tx, key string, now time.Time) bool {
	v := tx.Bucket(bucketExpiry).Get([]byte(key))
	return len(v) == 8 && !now.Before(deadlineTime(v))
}

func setExpiry(tx *bolt.Tx, key string, deadline time.Time) error {
	d := binary.BigEndian.AppendUint64(nil, uint64(deadline.UnixNano()))
	if err := tx.Bucket(bucketExpiry).Put([]byte(key), d); err != nil {
		return err
	}
	return tx.Bucket(bucketExpiring).Put(append(d, key...), []byte{})
}

// clearExpiry forgets key's deadline, if it has one.
func clearExpiry(tx *bolt.Tx, key string) error {
	exp := tx.Bucket(bucketExpiry)
	d := exp.Get([]byte(key))
	if d == nil {
		return nil
	}
	if err := tx.Bucket(bucketExpiring).Delete(append(append([]byte{}, d...), key...)); err != nil {
		return err
	}
	return exp.Delete([]byte(key))
}

func deadlineTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)))
}

// sweep deletes expired keys, each in a change of its own, until Close. It
// sleeps until the next deadline, or until Create sets one.
func (s *Bolt) sweep() {
	defer s.sweeping.Done()
	// At once: keys may have expired while the file was closed.
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.wake:
		}
		next, err := s.sweepExpired(time.Now())
		switch {
		case err != nil:
			t.Reset(sweepRetry)
		case next.IsZero():
			t.Stop()
		default:
			t.Reset(time.Until(next))
		}
	}
}

// sweepExpired deletes the keys whose deadline is not after now and
// returns the next deadline (zero when none is left).
func (s *Bolt) sweepExpired(now time.Time) (next time.Time, err error) {
	for {
		select {
		case <-s.done:
			// Closing: the rest waits for the next open, and reads hide
			// it meanwhile.
			return time.Time{}, nil
		default:
		}
		var due bool
		err := s.db.View(func(tx *bolt.Tx) error {
			next, due = firstDeadline(tx, now)
			return nil
		})
		if err != nil || !due {
			return next, boltErr(err)
		}
		if err := s.db.Update(func(tx *bolt.Tx) error { return s.deleteExpired(tx, now) }); err != nil {
			return time.Time{}, boltErr(err)
		}
		s.notify()
	}
}

// firstDeadline returns the earliest deadline and whether it is due.
func firstDeadline(tx *bolt.Tx, now time.Time) (time.Time, bool) {
	k, _ := tx.Bucket(bucketExpiring).Cursor().First()
	if len(k) < 8 {
		return time.Time{}, false
	}
	d := deadlineTime(k)
	return d, !now.Before(d)
}

// deleteExpired deletes up to sweepBatch keys whose deadline is not after
// now.
func (s *Bolt) deleteExpired(tx *bolt.Tx, now time.Time) error {
	var due [][]byte
	c := tx.Bucket(bucketExpiring).Cursor()
	for k, _ := c.First(); len(k) >= 8 && len(due) < sweepBatch; k, _ = c.Next() {
		if now.Before(deadlineTime(k)) {
			break
		}
		due = append(due, append([]byte{}, k...))
	}
	var rev int64
	for _, entry := range due {
		key := string(entry[8:])
		cur, ok, err := getKV(tx.Bucket(bucketKeys), key)
		if err != nil {
			return err
		}
		if ok && expired(tx, key, now) {
			if rev, err = apply(tx, cur, true, nil); err != nil {
				return err
			}
		}
		// The delete took the entry with it; one that outlived its key
		// or disagrees with the key's deadline goes all the same, so
		// that it is not found due again and again.
		if err := tx.Bucket(bucketExpiring).Delete(entry); err != nil {
			return err
		}
	}
	if rev == 0 {
		return nil
	}
	return s.autoCompact(tx.Bucket(bucketMeta), tx.Bucket(bucketEvents), rev)
}
