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

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

// Key prefixes. One byte each, so the namespaces sort apart.
const (
	prefixBlob  = 'b' // blob ID -> location
	prefixPack  = 'k' // pack ID -> size, blob count
	prefixPoint = 'p' // point ID -> catalogue entry (JSON)
)

// Location says where a blob is.
type Location struct {
	Pack blob.ID
	pack.Entry
}

// Index is the badger-backed index.
type Index struct {
	db *badger.DB
}

// Open opens or creates the index in dir.
func Open(dir string, log *slog.Logger) (*Index, error) {
	// Bounded caches keep memory flat however many chunks are indexed: table
	// indexes and blocks are paged in through fixed-size caches instead of
	// being held whole. Writes need no sync: a lost tail is rebuilt from the
	// packs on the next open.
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithSyncWrites(false).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(32 << 20).
		WithValueLogFileSize(64 << 20).
		WithCompression(options.None).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	return &Index{db: db}, nil
}

// Close closes the index.
func (x *Index) Close() error { return x.db.Close() }

func blobKey(id blob.ID) []byte { return append([]byte{prefixBlob}, id[:]...) }
func packKey(id blob.ID) []byte { return append([]byte{prefixPack}, id[:]...) }
func pointKey(id blob.ID) []byte {
	return append([]byte{prefixPoint}, id[:]...)
}

func encodeLocation(p blob.ID, e pack.Entry) []byte {
	b := make([]byte, 0, 32+2+3*binary.MaxVarintLen32)
	b = append(b, p[:]...)
	var flags byte
	if e.Compressed {
		flags = 1
	}
	b = append(b, byte(e.Type), flags)
	b = binary.AppendUvarint(b, uint64(e.Offset))
	b = binary.AppendUvarint(b, uint64(e.Length))
	return binary.AppendUvarint(b, uint64(e.RawLength))
}

func decodeLocation(id blob.ID, b []byte) (Location, error) {
	var l Location
	if len(b) < 34+3 {
		return l, fmt.Errorf("index entry for blob %s: truncated", id.Short())
	}
	copy(l.Pack[:], b)
	l.ID, l.Type, l.Compressed = id, blob.Type(b[32]), b[33] == 1
	b = b[34:]
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
			loc, err = decodeLocation(id, v)
			return err
		})
	})
	if err != nil {
		return loc, false, fmt.Errorf("index lookup %s: %w", id.Short(), err)
	}
	return loc, found, nil
}

// AddPack records a pack and all its blobs, in one batch.
func (x *Index) AddPack(id blob.ID, size int64, entries []pack.Entry) error {
	wb := x.db.NewWriteBatch()
	defer wb.Cancel()
	for _, e := range entries {
		if err := wb.Set(blobKey(e.ID), encodeLocation(id, e)); err != nil {
			return fmt.Errorf("index pack %s: %w", id.Short(), err)
		}
	}
	v := binary.AppendUvarint(nil, uint64(size))
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
	ID    blob.ID
	Size  int64
	Blobs int
}

// Packs calls fn for every indexed pack.
func (x *Index) Packs(fn func(PackInfo) error) error {
	return x.scan(prefixPack, func(k, v []byte) error {
		var p PackInfo
		copy(p.ID[:], k[1:])
		size, n := binary.Uvarint(v)
		count, m := binary.Uvarint(v[max(n, 0):])
		if n <= 0 || m <= 0 {
			return fmt.Errorf("index entry for pack %s: bad value", p.ID.Short())
		}
		p.Size, p.Blobs = int64(size), int(count)
		return fn(p)
	})
}

// Blobs calls fn for every indexed blob.
func (x *Index) Blobs(fn func(Location) error) error {
	return x.scan(prefixBlob, func(k, v []byte) error {
		var id blob.ID
		copy(id[:], k[1:])
		l, err := decodeLocation(id, v)
		if err != nil {
			return err
		}
		return fn(l)
	})
}

// ForgetPacks removes packs and every blob entry that points into them.
func (x *Index) ForgetPacks(gone map[blob.ID]bool) error {
	var keys [][]byte
	err := x.Blobs(func(l Location) error {
		if gone[l.Pack] {
			keys = append(keys, blobKey(l.ID))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for p := range gone {
		keys = append(keys, packKey(p))
	}
	wb := x.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("forget packs: %w", err)
		}
	}
	return wb.Flush()
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
