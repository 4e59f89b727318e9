package fleetlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// DefaultOrigin is the name to give the log's note key. Tessera takes a
// checkpoint's origin line from its signer's name, so a key named this way
// signs checkpoints whose origin is DefaultOrigin.
const DefaultOrigin = "stack-fleet/v1"

// MaxLeafSize is the largest leaf the log takes (tlog-tiles entry bundles
// store a leaf's length in two bytes).
const MaxLeafSize = tessera.DefaultEntrySizeLimit

// Defaults for the zero values of Options.
const (
	// DefaultCheckpointInterval keeps a new leaf provable within about a
	// second, well inside the time in which sidecars ship their audit records.
	DefaultCheckpointInterval = time.Second
	// DefaultBatchMaxSize and DefaultBatchMaxAge were tuned with
	// BenchmarkAppend: each batch costs a few fsyncs, so batches must be big
	// enough to amortise them, yet fill well before the age limit under load.
	DefaultBatchMaxSize = 2048
	DefaultBatchMaxAge  = 20 * time.Millisecond

	// awaitPoll is how often WaitCheckpoint looks for a new checkpoint; it
	// also bounds how late WaitCheckpoint notices a cancelled context.
	awaitPoll = 50 * time.Millisecond
)

// Options configures Open.
type Options struct {
	// Dir holds the log: its checkpoint and tiles, laid out as tlog-tiles
	// serves them, and tessera's private state in Dir/.state. Created if
	// missing. Required.
	Dir string

	// Signer signs checkpoints (an Ed25519 note signer, from note.NewSigner).
	// Its name is the log's origin. Required.
	Signer note.Signer

	// Origin, when set, must equal Signer.Name(): a check that the intended
	// key signs this log. Empty means Signer.Name(). Open also refuses a
	// directory whose checkpoint names another origin.
	Origin string

	// CheckpointInterval is how often a checkpoint is signed and published
	// while the log grows. Zero means DefaultCheckpointInterval; tessera's
	// minimum is 100 ms.
	CheckpointInterval time.Duration

	// BatchMaxSize and BatchMaxAge bound a sequencing batch: a batch is
	// written when it holds BatchMaxSize leaves or its first leaf has waited
	// BatchMaxAge. Zero means DefaultBatchMaxSize and DefaultBatchMaxAge.
	BatchMaxSize int
	BatchMaxAge  time.Duration
}

// Log is an open fleet log. Its methods are safe for concurrent use.
type Log struct {
	origin   string
	add      tessera.AddFn
	reader   tessera.LogReader
	shutdown func(context.Context) error
	awaiter  *tessera.PublicationAwaiter
	bg       context.Context // tessera's background work; cancelled by Close
	cancel   context.CancelFunc

	// addMu makes the leaves of one Append enter tessera's queue together
	// and in order: tessera sequences its queue in order, so this is what
	// keeps a call's leaves in order even with concurrent callers.
	addMu sync.Mutex

	// life is held shared by Append and exclusively by Close to set closed,
	// so that Close waits for the leaves in flight and none is added after.
	life      sync.RWMutex
	closed    bool
	closeOnce sync.Once
	closeErr  error
}

// Open opens the log in opts.Dir, creating it if needed, and starts
// tessera's sequencing and checkpoint publishing. The context is used for
// opening only: the log runs until Close.
func Open(ctx context.Context, opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("fleetlog: open: Options.Dir is required")
	}
	if opts.Signer == nil {
		return nil, errors.New("fleetlog: open: Options.Signer is required")
	}
	origin := opts.Signer.Name()
	if opts.Origin != "" && opts.Origin != origin {
		return nil, fmt.Errorf("fleetlog: open: Options.Origin is %q but the signer's key is named %q (the origin is the key's name)", opts.Origin, origin)
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.BatchMaxSize == 0 {
		opts.BatchMaxSize = DefaultBatchMaxSize
	}
	if opts.BatchMaxAge == 0 {
		opts.BatchMaxAge = DefaultBatchMaxAge
	}
	if opts.BatchMaxSize < 0 || opts.BatchMaxAge < 0 || opts.CheckpointInterval < 0 {
		return nil, errors.New("fleetlog: open: batch size, batch age and checkpoint interval must not be negative")
	}
	if err := checkOrigin(opts.Dir, origin); err != nil {
		return nil, err
	}

	driver, err := posix.New(ctx, posix.Config{Path: opts.Dir})
	if err != nil {
		return nil, fmt.Errorf("fleetlog: open %s: %w", opts.Dir, err)
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	appender, shutdown, reader, err := tessera.NewAppender(bg, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(opts.Signer).
		WithCheckpointInterval(opts.CheckpointInterval).
		WithBatching(uint(opts.BatchMaxSize), opts.BatchMaxAge))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fleetlog: open %s: %w", opts.Dir, err)
	}
	return &Log{
		origin:   origin,
		add:      appender.Add,
		reader:   reader,
		shutdown: shutdown,
		awaiter:  tessera.NewPublicationAwaiter(bg, reader.ReadCheckpoint, awaitPoll),
		bg:       bg,
		cancel:   cancel,
	}, nil
}

// checkOrigin refuses to open an existing log with a key of another name:
// its next checkpoint would silently start a different log.
func checkOrigin(dir, origin string) error {
	cp, err := os.ReadFile(filepath.Join(dir, layout.CheckpointPath))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fleetlog: open %s: %w", dir, err)
	}
	got, _, _ := bytes.Cut(cp, []byte("\n"))
	if string(got) != origin {
		return fmt.Errorf("%w: the log in %s has origin %q but the signer's key is named %q", ErrCheckpoint, dir, got, origin)
	}
	return nil
}

// Origin returns the log's origin, the first line of its checkpoints.
func (l *Log) Origin() string { return l.origin }

// Close waits for Appends in flight, waits until a checkpoint covering every
// leaf added since Open is published, and stops the log's background work.
// It is idempotent: later calls return the first call's result.
func (l *Log) Close(ctx context.Context) error {
	l.life.Lock()
	l.closed = true
	l.life.Unlock()
	l.closeOnce.Do(func() {
		if err := l.shutdown(ctx); err != nil {
			l.closeErr = fmt.Errorf("fleetlog: close: publishing the last checkpoint: %w", err)
		}
		l.cancel()
	})
	return l.closeErr
}

func (l *Log) isClosed() bool {
	l.life.RLock()
	defer l.life.RUnlock()
	return l.closed
}

// Append adds leaves to the log in the order given and returns their
// indices once they are durably sequenced and integrated (their tiles are
// written; a checkpoint covering them follows within CheckpointInterval).
// Leaves of concurrent calls may interleave, so one call's indices are
// increasing but not necessarily contiguous.
//
// The context is checked before any leaf is handed over; after that Append
// waits for the indices, which takes at most about BatchMaxAge plus one
// batch write. On an error other than ErrLeafTooLarge or a cancelled
// context, some leaves may be in the log: a log never takes a leaf back.
func (l *Log) Append(ctx context.Context, leaves [][]byte) ([]uint64, error) {
	for i, leaf := range leaves {
		if len(leaf) > MaxLeafSize {
			return nil, fmt.Errorf("fleetlog: append: leaf %d is %d bytes: %w (max %d)", i, len(leaf), ErrLeafTooLarge, MaxLeafSize)
		}
	}
	l.life.RLock()
	defer l.life.RUnlock()
	if l.closed {
		return nil, fmt.Errorf("fleetlog: append: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fleetlog: append: %w", err)
	}
	if len(leaves) == 0 {
		return nil, nil
	}

	futures := make([]tessera.IndexFuture, len(leaves))
	l.addMu.Lock()
	for i, leaf := range leaves {
		futures[i] = l.add(ctx, tessera.NewEntry(leaf))
	}
	l.addMu.Unlock()

	indices := make([]uint64, len(leaves))
	var firstErr error
	for i, f := range futures {
		idx, err := f()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("fleetlog: append: leaf %d: %w", i, err)
			}
			continue
		}
		indices[i] = idx.Index
	}
	if firstErr != nil {
		return nil, firstErr
	}
	for i := 1; i < len(indices); i++ {
		if indices[i] <= indices[i-1] {
			return indices, fmt.Errorf("fleetlog: append: leaf %d got index %d after index %d: %w", i, indices[i], indices[i-1], ErrOrder)
		}
	}
	return indices, nil
}

// Size returns the number of leaves integrated into the log's tree. A
// checkpoint covering them may not be published yet (see WaitCheckpoint).
func (l *Log) Size(ctx context.Context) (uint64, error) {
	if l.isClosed() {
		return 0, fmt.Errorf("fleetlog: size: %w", ErrClosed)
	}
	size, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return 0, fmt.Errorf("fleetlog: size: %w", err)
	}
	return size, nil
}

// Checkpoint returns the latest published checkpoint: a signed note whose
// text is the origin, the tree size and the base64 root hash, one a line.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	if l.isClosed() {
		return nil, fmt.Errorf("fleetlog: checkpoint: %w", ErrClosed)
	}
	cp, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleetlog: checkpoint: %w", err)
	}
	return cp, nil
}

// WaitCheckpoint blocks until a published checkpoint covers index (its size
// is greater than index) and returns that checkpoint. It returns the
// context's error if the context ends first, and ErrClosed if the log is
// closed meanwhile.
func (l *Log) WaitCheckpoint(ctx context.Context, index uint64) ([]byte, error) {
	if l.isClosed() {
		return nil, fmt.Errorf("fleetlog: wait for checkpoint: %w", ErrClosed)
	}
	_, cp, err := l.awaiter.Await(ctx, func() (tessera.Index, error) {
		return tessera.Index{Index: index}, nil
	})
	switch {
	case err == nil:
		return cp, nil
	case l.bg.Err() != nil:
		return nil, fmt.Errorf("fleetlog: wait for checkpoint covering %d: %w", index, ErrClosed)
	default:
		return nil, fmt.Errorf("fleetlog: wait for checkpoint covering %d: %w", index, err)
	}
}

// Entries returns the n leaves from index from on, read back from the
// log's entry bundles. It returns ErrNotFound unless all n are integrated.
func (l *Log) Entries(ctx context.Context, from, n uint64) ([][]byte, error) {
	size, err := l.Size(ctx)
	if err != nil {
		return nil, err
	}
	if from > size || n > size-from {
		return nil, fmt.Errorf("fleetlog: entries [%d, %d+%d) of a log of size %d: %w", from, from, n, size, ErrNotFound)
	}
	out := make([][]byte, 0, n)
	for ri := range layout.Range(from, n, size) {
		raw, err := l.reader.ReadEntryBundle(ctx, ri.Index, ri.Partial)
		if err != nil {
			return nil, fmt.Errorf("fleetlog: entries: bundle %d: %w", ri.Index, err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return nil, fmt.Errorf("fleetlog: entries: bundle %d: %w", ri.Index, err)
		}
		if uint(len(b.Entries)) < ri.First+ri.N {
			return nil, fmt.Errorf("fleetlog: entries: bundle %d holds %d leaves, want at least %d", ri.Index, len(b.Entries), ri.First+ri.N)
		}
		out = append(out, b.Entries[ri.First:ri.First+ri.N]...)
	}
	return out, nil
}

// InclusionProof returns the proof that the leaf at index is in the tree of
// the given size, built from the log's tiles. Size is normally a published
// checkpoint's; the proof verifies against that checkpoint's root.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	pb, err := l.proofBuilder(ctx, size)
	if err != nil {
		return nil, fmt.Errorf("fleetlog: inclusion proof of %d in %d: %w", index, size, err)
	}
	if index >= size {
		return nil, fmt.Errorf("fleetlog: inclusion proof of %d in %d: %w", index, size, ErrNotFound)
	}
	p, err := pb.InclusionProof(ctx, index)
	if err != nil {
		return nil, fmt.Errorf("fleetlog: inclusion proof of %d in %d: %w", index, size, err)
	}
	return p, nil
}

// ConsistencyProof returns the proof that the tree of size from is a prefix
// of the tree of size to, built from the log's tiles.
func (l *Log) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	pb, err := l.proofBuilder(ctx, to)
	if err != nil {
		return nil, fmt.Errorf("fleetlog: consistency proof from %d to %d: %w", from, to, err)
	}
	if from > to {
		return nil, fmt.Errorf("fleetlog: consistency proof from %d to %d: %w", from, to, ErrNotFound)
	}
	p, err := pb.ConsistencyProof(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("fleetlog: consistency proof from %d to %d: %w", from, to, err)
	}
	return p, nil
}

func (l *Log) proofBuilder(ctx context.Context, size uint64) (*client.ProofBuilder, error) {
	integrated, err := l.Size(ctx)
	if err != nil {
		return nil, err
	}
	if size > integrated {
		return nil, fmt.Errorf("size beyond the integrated size %d: %w", integrated, ErrNotFound)
	}
	return client.NewProofBuilder(ctx, size, l.readTile)
}

// readTile is the tile fetcher for proofs. Tessera writes a partial tile
// only for the sizes at which a batch ended, so a proof for a size inside a
// batch finds its partial tile missing; any wider version of that tile
// starts with the same hashes (tiles only grow), so it is cut to width.
func (l *Log) readTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	t, err := l.reader.ReadTile(ctx, level, index, p)
	if err == nil || p == 0 || !errors.Is(err, os.ErrNotExist) {
		return t, err
	}
	size, sizeErr := l.reader.IntegratedSize(ctx)
	if sizeErr != nil {
		return nil, sizeErr
	}
	wider := layout.PartialTileSize(level, index, size)
	if wider != 0 && wider < p {
		return nil, err
	}
	t, err = l.reader.ReadTile(ctx, level, index, wider)
	if err != nil {
		return nil, err
	}
	const hashSize = 32
	if len(t) < int(p)*hashSize {
		return nil, fmt.Errorf("tile %d/%d holds %d bytes, want at least %d", level, index, len(t), int(p)*hashSize)
	}
	return t[:int(p)*hashSize], nil
}
