// Package chunkstore is Bulwark's deduplicating store: disks are cut into
// content-defined chunks, each kept once, compressed and sealed, in packs on
// a backend; a badger index finds them; restore points are manifests whose
// disk maps say which chunk holds which bytes.
//
// Write order makes every store crash-safe: a pack is durable before its
// blobs are indexed, and a point's manifest is written last, when everything
// it names is durable. A crash leaves at most packs that no point uses, and
// an index that lags behind the packs is brought up to date on open.
package chunkstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/crypto"
	"github.com/bulwarkbackup/bulwark/chunkstore/index"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

// Store is an open store. Its methods are safe for concurrent use.
type Store struct {
	be     backend.Backend
	key    *crypto.Key
	codec  *pack.Codec
	cfg    *config
	idx    *index.Index
	log    *slog.Logger
	packer *packer
	cache  *chunkCache

	readOnly bool
	close    []func() error // index, then lock
	// refreshMu serialises a reader's catching up with packs a writer
	// wrote or deleted since the reader opened.
	refreshMu sync.Mutex

	mu       sync.Mutex
	inflight map[blob.ID]struct{} // claimed by a backup, pack not yet indexed
	backups  map[*Backup]struct{} // not yet committed or closed
	// gcHits, while a GC runs, gathers the dedup hits of backups that end
	// during it: their points may be committed after the GC listed points.
	gcHits map[blob.ID]uint32

	// sweep orders dedup against garbage collection: a backup holds it for
	// reading from finding a blob in the index to recording that it uses
	// it, and GC holds it for writing while it takes its last roots and
	// drops the index entries of what it deletes. A blob is thus either
	// seen by GC as used, or missed by the backup, which stores it anew.
	sweep sync.RWMutex
	// maint lets one GC, prune or check run at a time.
	maint sync.Mutex
}

// InitOptions configure a new store.
type InitOptions struct {
	Password []byte
	Params   Params           // zero value: DefaultParams
	KDF      crypto.KDFParams // zero value: crypto.DefaultKDF
}

// ErrExists is returned by Init for a store that already exists.
var ErrExists = errors.New("a store already exists there")

// Init creates a store on be: a random master key wrapped with the password,
// and a sealed configuration with a random chunker polynomial.
func Init(ctx context.Context, be backend.Backend, opts InitOptions) error {
	if _, err := be.Stat(ctx, backend.Handle{Kind: backend.Config, Name: "config"}); err == nil {
		return fmt.Errorf("init %s: %w", be.Location(), ErrExists)
	}
	p := opts.Params
	if p == (Params{}) {
		p = DefaultParams()
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	kdf := opts.KDF
	if kdf == (crypto.KDFParams{}) {
		kdf = crypto.DefaultKDF
	}
	key, err := crypto.NewKey()
	if err != nil {
		return err
	}
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return fmt.Errorf("init: chunker polynomial: %w", err)
	}
	var rid [16]byte
	if _, err := rand.Read(rid[:]); err != nil {
		return err
	}
	host, _ := os.Hostname()
	kf, err := crypto.Wrap(key, opts.Password, kdf, host)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	kb, err := kf.Marshal()
	if err != nil {
		return err
	}
	cb, err := json.Marshal(config{Version: storeVersion, ID: hex.EncodeToString(rid[:]), Polynomial: pol, Params: p})
	if err != nil {
		return err
	}
	kid := key.ID(kb)
	if err := be.Save(ctx, backend.Handle{Kind: backend.Keys, Name: kid.String()}, kb); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	// The config is written last: a store exists once its config does.
	if err := be.Save(ctx, backend.Handle{Kind: backend.Config, Name: "config"}, key.Seal(nil, cb, configAD)); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	return nil
}

// Options configure Open.
type Options struct {
	Password []byte
	// IndexDir holds the badger index. Empty means "index" inside a local
	// backend's directory.
	IndexDir string
	Logger   *slog.Logger
	// Purpose is recorded in the lock, for whoever finds the store busy.
	Purpose string
	// CacheBytes bounds the chunk cache of readers; 0 means 64 MiB.
	CacheBytes int64
	// ReadOnly opens the store without the writer's lock, for commands
	// that only read: they never wait for a writer nor stop one from
	// starting. They use an index of their own ("index-read" beside the
	// writer's, or a temporary one while another reader has that), which
	// open brings up to date from the packs and manifests.
	ReadOnly bool
	// RebuildIndex discards the index before opening, so that it is built
	// again from the packs and manifests alone.
	RebuildIndex bool
}

// Open opens the store on be. Unless opts.ReadOnly, the caller is its only
// writer: the backend's lock is held until Close, and a second writer gets
// an error naming the holder.
func Open(ctx context.Context, be backend.Backend, opts Options) (_ *Store, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cleanup []func() error
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				_ = cleanup[i]()
			}
		}
	}()
	if !opts.ReadOnly {
		host, _ := os.Hostname()
		unlock, stale, err := be.Lock(ctx, backend.LockInfo{PID: os.Getpid(), Host: host, Since: time.Now().UTC(), What: opts.Purpose})
		if err != nil {
			return nil, err
		}
		cleanup = append(cleanup, unlock)
		if stale != nil {
			log.Warn("took over the lock of a writer that died", "pid", stale.PID, "host", stale.Host,
				"since", stale.Since, "what", stale.What)
		}
	}
	sealedCfg, err := be.Load(ctx, backend.Handle{Kind: backend.Config, Name: "config"}, 0, -1)
	if errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("open %s: no store there (run \"bulwark store init\" first)", be.Location())
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	key, err := unwrapKey(ctx, be, opts.Password)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	cb, err := key.Open(nil, sealedCfg, configAD)
	if err != nil {
		return nil, fmt.Errorf("open %s: config: %w", be.Location(), err)
	}
	cfg, err := decodeConfig(cb)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	codec, err := pack.NewCodec(key, zstd.EncoderLevel(cfg.Params.ZstdLevel))
	if err != nil {
		return nil, err
	}
	idx, closeIdx, err := openIndex(be, opts, log)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, closeIdx)
	cacheBytes := opts.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = 64 << 20
	}
	s := &Store{
		be: be, key: key, codec: codec, cfg: cfg, idx: idx, log: log, readOnly: opts.ReadOnly,
		inflight: make(map[blob.ID]struct{}),
		backups:  make(map[*Backup]struct{}),
		cache:    newChunkCache(cacheBytes),
	}
	s.packer = newPacker(s)
	if err := s.reconcile(ctx); err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	s.close = cleanup
	return s, nil
}

// openIndex opens the index that opts asks for and returns what closes it.
func openIndex(be backend.Backend, opts Options, log *slog.Logger) (*index.Index, func() error, error) {
	dir := opts.IndexDir
	if dir == "" {
		l, ok := be.(*backend.Local)
		if !ok {
			return nil, nil, errors.New("open: an index directory is needed for a non-local backend")
		}
		dir = filepath.Join(l.Dir(), "index")
		if opts.ReadOnly {
			dir += "-read"
		}
	}
	if opts.RebuildIndex {
		if opts.ReadOnly {
			return nil, nil, errors.New("open: the index cannot be rebuilt read-only")
		}
		if err := os.RemoveAll(dir); err != nil {
			return nil, nil, fmt.Errorf("rebuild index: %w", err)
		}
		log.Info("index discarded, to be rebuilt from the packs", "dir", dir)
	}
	idx, err := index.Open(dir, log)
	for attempt := 0; err != nil && !index.IsBusy(err) && attempt < 2; attempt++ {
		// Badger killed just after creating a file leaves it empty, and its
		// next open fails on it, once (dgraph-io/badger#2207). The index is
		// a cache: a second try, then a rebuild from the packs.
		if attempt == 0 {
			log.Warn("index does not open: trying again", "dir", dir, "err", err)
		} else {
			log.Error("index does not open: rebuilding it from the packs", "dir", dir, "err", err)
			if rerr := os.RemoveAll(dir); rerr != nil {
				return nil, nil, fmt.Errorf("%w; and removing it: %w", err, rerr)
			}
		}
		idx, err = index.Open(dir, log)
	}
	if err == nil {
		return idx, idx.Close, nil
	}
	if !opts.ReadOnly || !index.IsBusy(err) {
		return nil, nil, err
	}
	// Another reader has the shared read index: this one builds its own.
	tmp, terr := os.MkdirTemp("", "bulwark-index-*")
	if terr != nil {
		return nil, nil, fmt.Errorf("%w; and a private one: %w", err, terr)
	}
	log.Info("read index busy: building a private one", "dir", tmp)
	if idx, err = index.Open(tmp, log); err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	return idx, func() error {
		err := idx.Close()
		os.RemoveAll(tmp)
		return err
	}, nil
}

func unwrapKey(ctx context.Context, be backend.Backend, password []byte) (*crypto.Key, error) {
	var names []string
	if err := be.List(ctx, backend.Keys, func(name string, _ int64) error {
		names = append(names, name)
		return nil
	}); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("store has no key files")
	}
	var lastErr error = crypto.ErrWrongPassword
	for _, n := range names {
		h := backend.Handle{Kind: backend.Keys, Name: n}
		size, err := be.Stat(ctx, h)
		if err == nil && size > 64<<10 {
			err = fmt.Errorf("key file %s: %d bytes is too large", n, size)
		}
		var b []byte
		if err == nil {
			b, err = be.Load(ctx, h, 0, -1)
		}
		if err != nil {
			lastErr = err
			continue
		}
		kf, err := crypto.ParseKeyFile(b)
		if err != nil {
			lastErr = fmt.Errorf("key %s: %w", n, err)
			continue
		}
		k, err := kf.Unwrap(password)
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, crypto.ErrWrongPassword) {
			lastErr = fmt.Errorf("key %s: %w", n, err)
		}
	}
	return nil, lastErr
}

// Close closes the index and releases the lock. It commits nothing:
// points are committed explicitly.
func (s *Store) Close() error {
	var err error
	for i := len(s.close) - 1; i >= 0; i-- {
		if cerr := s.close[i](); err == nil {
			err = cerr
		}
	}
	return err
}

// ReadOnly reports whether the store was opened read-only.
func (s *Store) ReadOnly() bool { return s.readOnly }

// ID is the store's random identity, made when it was initialised.
func (s *Store) ID() string { return s.cfg.ID }

// Params returns the store's parameters.
func (s *Store) Params() Params { return s.cfg.Params }

// Location says where the store is.
func (s *Store) Location() string { return s.be.Location() }

// SealSecret seals a secret that belongs with the store, such as a vCenter
// password the appliance keeps in its state, under the store's master key:
// whoever has the sealed bytes without the store's password learns nothing.
// purpose binds the secret to its use, and must be given again to open it.
func (s *Store) SealSecret(purpose string, secret []byte) []byte {
	return s.key.Seal(nil, secret, []byte("secret\x00"+purpose))
}

// OpenSecret opens what SealSecret sealed for purpose.
func (s *Store) OpenSecret(purpose string, sealed []byte) ([]byte, error) {
	b, err := s.key.Open(nil, sealed, []byte("secret\x00"+purpose))
	if err != nil {
		return nil, fmt.Errorf("open secret for %s: %w", purpose, err)
	}
	return b, nil
}
