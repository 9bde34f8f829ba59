// Package index holds the store's index: for each blob, the pack and place
// it lives in; the set of packs it was built from; and the catalogue of
// restore points. It lives in badger and is a cache: everything in it can
// be rebuilt from the packs and point manifests.
package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

// Key prefixes. One byte each, so the namespaces sort apart.
const (
	prefixBlob  = 'b' // blob ID -> pack number, location in the pack
	prefixPack  = 'k' // pack ID -> pack number, size, blob count
	prefixPoint = 'p' // point ID -> sealed catalogue entry
	prefixMeta  = 'm' // name -> state of the store's own work, such as a check's progress
	prefixSpare = 'd' // blob ID, pack number -> a second copy's location
)

// Blob entries name their pack by a small number rather than its 32-byte ID:
// entries are most of the index, and their size is what its memory and disk
// use grow with. The numbers of all packs are held in memory.

// SoftMemoryLimit is the Go heap limit a process using the index should run
// with (runtime/debug.SetMemoryLimit). Badger's compactions make garbage
// fast; without a limit the heap grows to twice its peak before the
// collector runs, and a store of 10 million chunks passes 1 GiB of RSS.
const SoftMemoryLimit = 512 << 20

// Location says where a blob is.
type Location struct {
	Pack blob.ID
	// PackNumber is the index's short name for Pack. Numbers grow with
	// every pack indexed, so they order packs by when they were indexed.
	PackNumber uint32
	pack.Entry
}

// Index is the badger-backed index.
type Index struct {
	db *badger.DB

	mu      sync.Mutex
	packs   map[uint32]blob.ID // pack number -> pack ID
	numbers map[blob.ID]uint32
	next    uint32
}

// Open opens or creates the index in dir.
func Open(dir string, log *slog.Logger) (*Index, error) {
	// Memory stays flat however many chunks are indexed: table indexes and
	// blocks are paged in through small fixed caches instead of being held
	// whole, and blocks are compressed because badger maps its tables into
	// memory, so their size counts in the process's RSS. Measured with 10
	// million chunks (BenchmarkIndexMillions): 1117 MiB peak RSS with
	// uncompressed blocks, 767 MiB with these options, for lookups about
	// three times slower (tens of microseconds, per chunk of a megabyte).
	// Writes need no sync: a lost tail is rebuilt from the packs on open.
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithSyncWrites(false).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithCompression(options.ZSTD).
		WithZSTDCompressionLevel(1).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	x := &Index{db: db, packs: map[uint32]blob.ID{}, numbers: map[blob.ID]uint32{}, next: 1}
	if err := x.Packs(func(p PackInfo) error {
		x.packs[p.Number], x.numbers[p.ID] = p.ID, p.Number
		x.next = max(x.next, p.Number+1)
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	return x, nil
}

// IsBusy reports whether Open failed because another process has the
// index open.
func IsBusy(err error) bool {
	// Badger has no error value for it; its message is stable since v1.
	return err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// Close closes the index.
func (x *Index) Close() error { return x.db.Close() }

func blobKey(id blob.ID) []byte { return append([]byte{prefixBlob}, id[:]...) }
func packKey(id blob.ID) []byte { return append([]byte{prefixPack}, id[:]...) }
func pointKey(id blob.ID) []byte {
	return append([]byte{prefixPoint}, id[:]...)
}

func encodeLocation(pack uint32, e pack.Entry) []byte {
	b := make([]byte, 0, 2+4*binary.MaxVarintLen32)
	b = binary.AppendUvarint(b, uint64(pack))
	var flags byte
	if e.Compressed {
		flags = 1
	}
	b = append(b, byte(e.Type), flags)
	b = binary.AppendUvarint(b, uint64(e.Offset))
	b = binary.AppendUvarint(b, uint64(e.Length))
	return binary.AppendUvarint(b, uint64(e.RawLength))
}

func (x *Index) decodeLocation(id blob.ID, b []byte) (Location, error) {
	var l Location
	num, n := binary.Uvarint(b)
	if n <= 0 || len(b) < n+2 {
		return l, fmt.Errorf("index entry for blob %s: truncated", id.Short())
	}
	x.mu.Lock()
	p, ok := x.packs[uint32(num)]
	x.mu.Unlock()
	if !ok {
		return l, fmt.Errorf("index entry for blob %s: %w %d", id.Short(), errUnknownPack, num)
	}
	l.Pack, l.PackNumber, l.ID, l.Type, l.Compressed = p, uint32(num), id, blob.Type(b[n]), b[n+1] == 1
	b = b[n+2:]
	var v [3]uint32
	for i := range v {
		x, n := binary.Uvarint(b)
		if n <= 0 || x > 1<<32-1 {
			return l, fmt.Errorf("index entry for blob %s: bad number", id.Short())
		}
		v[i], b = uint32(x), b[n:]
	}
	l.Offset, l.Length, l.RawLength = v[0], v[1], v[2]
	return l, nil
}

// Lookup returns where blob id is, and whether it is indexed at all.
func (x *Index) Lookup(id blob.ID) (Location, bool, error) {
	loc, found, err := x.lookup(id)
	if errors.Is(err, errUnknownPack) {
		// Packs leave the table after their entries are written away (see
		// apply), so a read that began before that write can find an entry
		// of a pack just forgotten; one that begins now cannot.
		loc, found, err = x.lookup(id)
	}
	return loc, found, err
}

// errUnknownPack is a blob entry naming a pack number the table lacks.
var errUnknownPack = errors.New("unknown pack number")

func (x *Index) lookup(id blob.ID) (Location, bool, error) {
	var loc Location
	found := false
	err := x.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(blobKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(v []byte) error {
			loc, err = x.decodeLocation(id, v)
			return err
		})
	})
	if err != nil {
		return loc, false, fmt.Errorf("index lookup %s: %w", id.Short(), err)
	}
	return loc, found, nil
}

func spareKey(id blob.ID, pack uint32) []byte {
	return binary.BigEndian.AppendUint32(append([]byte{prefixSpare}, id[:]...), pack)
}

// AddPack records a pack and all its blobs, in one batch. A blob indexed
// in another pack is pointed at this one: a pack written now holds the
// copy in use.
func (x *Index) AddPack(id blob.ID, size int64, entries []pack.Entry) error {
	return x.addPack(id, size, entries, false)
}

// AddFoundPack records a pack found in the backend rather than written by
// this process. Its blobs that are indexed in another pack keep that entry,
// and this copy is kept as a spare: a GC that died between repacking and
// deleting leaves two copies, and either may go first.
func (x *Index) AddFoundPack(id blob.ID, size int64, entries []pack.Entry) error {
	return x.addPack(id, size, entries, true)
}

func (x *Index) addPack(id blob.ID, size int64, entries []pack.Entry, found bool) error {
	x.mu.Lock()
	num, ok := x.numbers[id]
	if !ok {
		num = x.next
		x.next++
		x.packs[num], x.numbers[id] = id, num
	}
	x.mu.Unlock()
	wb := x.db.NewWriteBatch()
	defer wb.Cancel()
	for _, e := range entries {
		k := blobKey(e.ID)
		if found {
			other, indexed, err := x.Lookup(e.ID)
			if err != nil {
				return fmt.Errorf("index pack %s: %w", id.Short(), err)
			}
			if indexed && other.PackNumber != num {
				k = spareKey(e.ID, num)
			}
		}
		if err := wb.Set(k, encodeLocation(num, e)); err != nil {
			return fmt.Errorf("index pack %s: %w", id.Short(), err)
		}
	}
	v := binary.AppendUvarint(nil, uint64(num))
	v = binary.AppendUvarint(v, uint64(size))
	v = binary.AppendUvarint(v, uint64(len(entries)))
	if err := wb.Set(packKey(id), v); err != nil {
		return fmt.Errorf("index pack %s: %w", id.Short(), err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("index pack %s: %w", id.Short(), err)
	}
	return nil
}

// PackInfo is what the index knows of a pack.
type PackInfo struct {
	ID     blob.ID
	Size   int64
	Blobs  int
	Number uint32
}

// Packs calls fn for every indexed pack.
func (x *Index) Packs(fn func(PackInfo) error) error {
	return x.scan(prefixPack, func(k, v []byte) error {
		var p PackInfo
		copy(p.ID[:], k[1:])
		var f [3]uint64
		for i := range f {
			x, n := binary.Uvarint(v)
			if n <= 0 || (i == 0 && (x == 0 || x > 1<<32-1)) {
				return fmt.Errorf("index entry for pack %s: bad value", p.ID.Short())
			}
			f[i], v = x, v[n:]
		}
		p.Number, p.Size, p.Blobs = uint32(f[0]), int64(f[1]), int(f[2])
		return fn(p)
	})
}

// Blobs calls fn for every indexed blob.
func (x *Index) Blobs(fn func(Location) error) error {
	return x.scan(prefixBlob, func(k, v []byte) error {
		var id blob.ID
		copy(id[:], k[1:])
		l, err := x.decodeLocation(id, v)
		if err != nil {
			return err
		}
		return fn(l)
	})
}

// ForgetPacks removes packs and every blob entry that points into them. A
// blob with a spare copy in a pack that stays is pointed at that copy.
func (x *Index) ForgetPacks(gone map[blob.ID]bool) error {
	var keys [][]byte
	lost := map[blob.ID]bool{}
	err := x.Blobs(func(l Location) error {
		if gone[l.Pack] {
			keys = append(keys, blobKey(l.ID))
			lost[l.ID] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	promote := map[blob.ID][]byte{}
	err = x.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{prefixSpare}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if len(k) != 1+32+4 {
				return fmt.Errorf("index: spare key of %d bytes", len(k))
			}
			var id blob.ID
			copy(id[:], k[1:33])
			x.mu.Lock()
			p, known := x.packs[binary.BigEndian.Uint32(k[33:])]
			x.mu.Unlock()
			switch {
			case !known || gone[p]:
				keys = append(keys, k)
			case lost[id] && promote[id] == nil:
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				promote[id] = v
				keys = append(keys, k)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget packs: %w", err)
	}
	packs := make([]blob.ID, 0, len(gone))
	for p := range gone {
		packs = append(packs, p)
	}
	return x.apply(keys, promote, packs)
}

// Forget removes the entries of blobs and packs. The caller has made sure
// that no entry of a blob it names points elsewhere than it expects.
func (x *Index) Forget(blobs []blob.ID, packs []blob.ID) error {
	keys := make([][]byte, 0, len(blobs))
	for _, id := range blobs {
		keys = append(keys, blobKey(id))
	}
	return x.apply(keys, nil, packs)
}

// apply deletes keys and packs and sets blob entries, in one batch, so that
// a crash never leaves a blob without the entry it was moved to.
//
// The packs leave the in-memory table only once the batch is written: a
// lookup beside it must never find an entry naming a pack number that the
// table no longer knows. Until then such an entry names a pack that is
// known but gone, which a reader handles by refreshing and looking again.
func (x *Index) apply(keys [][]byte, set map[blob.ID][]byte, packs []blob.ID) error {
	for _, p := range packs {
		keys = append(keys, packKey(p))
	}
	wb := x.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if k[0] == prefixBlob && len(k) == 33 && set[blob.ID(k[1:])] != nil {
			continue // set below
		}
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("forget packs: %w", err)
		}
	}
	for id, v := range set {
		if err := wb.Set(blobKey(id), v); err != nil {
			return fmt.Errorf("forget packs: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("forget packs: %w", err)
	}
	x.mu.Lock()
	for _, p := range packs {
		delete(x.packs, x.numbers[p])
		delete(x.numbers, p)
	}
	x.mu.Unlock()
	return nil
}

// PackCount is the number of packs indexed.
func (x *Index) PackCount() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.packs)
}

// NextPackNumber is the number the next pack indexed will get: every pack
// indexed before the call has a lower one.
func (x *Index) NextPackNumber() uint32 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.next
}

// PutPoint stores a point's catalogue entry.
func (x *Index) PutPoint(id blob.ID, entry []byte) error {
	return x.db.Update(func(txn *badger.Txn) error { return txn.Set(pointKey(id), entry) })
}

// DeletePoint removes a point's catalogue entry.
func (x *Index) DeletePoint(id blob.ID) error {
	return x.db.Update(func(txn *badger.Txn) error { return txn.Delete(pointKey(id)) })
}

// Points calls fn for every catalogued point.
func (x *Index) Points(fn func(id blob.ID, entry []byte) error) error {
	return x.scan(prefixPoint, func(k, v []byte) error {
		var id blob.ID
		copy(id[:], k[1:])
		return fn(id, v)
	})
}

// Meta returns a named value of the store's own bookkeeping, or nil.
func (x *Index) Meta(name string) ([]byte, error) {
	var v []byte
	err := x.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append([]byte{prefixMeta}, name...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("index meta %s: %w", name, err)
	}
	return v, nil
}

// SetMeta stores a named value durably; nil deletes it.
func (x *Index) SetMeta(name string, v []byte) error {
	k := append([]byte{prefixMeta}, name...)
	err := x.db.Update(func(txn *badger.Txn) error {
		if v == nil {
			return txn.Delete(k)
		}
		return txn.Set(k, v)
	})
	if err == nil {
		err = x.db.Sync()
	}
	if err != nil {
		return fmt.Errorf("index meta %s: %w", name, err)
	}
	return nil
}

// Sync makes everything written so far durable.
func (x *Index) Sync() error { return x.db.Sync() }

func (x *Index) scan(prefix byte, fn func(k, v []byte) error) error {
	return x.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{prefix}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 33 {
				return fmt.Errorf("index: key of %d bytes under prefix %q", len(k), prefix)
			}
			if err := item.Value(func(v []byte) error { return fn(k, v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// badgerLogger sends badger's messages to slog, errors and warnings only:
// its info lines narrate compactions nobody needs to read.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any) {
	l.log.Error(fmt.Sprintf(f, a...), "component", "index")
}
func (l badgerLogger) Warningf(f string, a ...any) {
	l.log.Warn(fmt.Sprintf(f, a...), "component", "index")
}
func (l badgerLogger) Infof(string, ...any)  {}
func (l badgerLogger) Debugf(string, ...any) {}
