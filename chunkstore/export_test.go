package chunkstore

import (
	"context"
	"fmt"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

// Test hooks for check_test.go: they reach the index and the pack trailers,
// which the exported API does not show.

// BlobLocation returns the pack and the place the index has for blob id.
func BlobLocation(s *Store, id blob.ID) (blob.ID, pack.Entry, error) {
	loc, found, err := s.idx.Lookup(id)
	if err != nil {
		return blob.ID{}, pack.Entry{}, err
	}
	if !found {
		return blob.ID{}, pack.Entry{}, fmt.Errorf("blob %s is not indexed", id.Short())
	}
	return loc.Pack, loc.Entry, nil
}

// PackEntries reads the entries of a pack's trailer from the backend.
func PackEntries(ctx context.Context, s *Store, id blob.ID) ([]pack.Entry, error) {
	size, err := s.be.Stat(ctx, backend.Handle{Kind: backend.Packs, Name: id.String()})
	if err != nil {
		return nil, err
	}
	return s.readTrailer(ctx, id, size)
}

// MisindexBlob makes the index entry of blob id stale: it is pointed at the
// place of blob other, in the same pack, while the pack's other entries and
// its size and count stay as they are.
func MisindexBlob(ctx context.Context, s *Store, id, other blob.ID) error {
	p, _, err := BlobLocation(s, id)
	if err != nil {
		return err
	}
	size, err := s.be.Stat(ctx, backend.Handle{Kind: backend.Packs, Name: p.String()})
	if err != nil {
		return err
	}
	entries, err := s.readTrailer(ctx, p, size)
	if err != nil {
		return err
	}
	var at *pack.Entry
	for i := range entries {
		if entries[i].ID == other {
			at = &entries[i]
		}
	}
	if at == nil {
		return fmt.Errorf("blob %s is not in pack %s", other.Short(), p.Short())
	}
	for i := range entries {
		if entries[i].ID == id {
			entries[i].Offset, entries[i].Length, entries[i].RawLength = at.Offset, at.Length, at.RawLength
		}
	}
	return s.idx.AddPack(p, size, entries)
}
