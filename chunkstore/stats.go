package chunkstore

import (
	"context"

	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/index"
)

// Stats describe a store's contents.
type Stats struct {
	Points       int   `json:"points"`
	LogicalBytes int64 `json:"logical_bytes"` // capacity of every disk of every point
	DataBytes    int64 `json:"data_bytes"`    // of those, bytes that are not zero
	UniqueBytes  int64 `json:"unique_bytes"`  // plaintext of the chunks kept, each once
	BlobBytes    int64 `json:"blob_bytes"`    // sealed size of every blob
	StoredBytes  int64 `json:"stored_bytes"`  // size of every pack
	Chunks       int64 `json:"chunks"`
	MapPages     int64 `json:"map_pages"`
	Packs        int64 `json:"packs"`
	// DedupRatio is DataBytes / UniqueBytes: how many times each kept byte
	// is used. CompressionRatio is plaintext over sealed size of all blobs.
	DedupRatio       float64 `json:"dedup_ratio"`
	CompressionRatio float64 `json:"compression_ratio"`
}

// Stats computes the store's statistics from the index.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	points, err := s.Points(ctx)
	if err != nil {
		return st, err
	}
	st.Points = len(points)
	for _, p := range points {
		for _, d := range p.Disks {
			st.LogicalBytes += d.Capacity
			st.DataBytes += d.DataBytes
		}
	}
	var raw int64
	if err := s.idx.Blobs(func(l index.Location) error {
		raw += int64(l.RawLength)
		st.BlobBytes += int64(l.Length)
		if l.Type == blob.Data {
			st.Chunks++
			st.UniqueBytes += int64(l.RawLength)
		} else {
			st.MapPages++
		}
		return nil
	}); err != nil {
		return st, err
	}
	if err := s.idx.Packs(func(p index.PackInfo) error {
		st.Packs++
		st.StoredBytes += p.Size
		return nil
	}); err != nil {
		return st, err
	}
	if st.UniqueBytes > 0 {
		st.DedupRatio = float64(st.DataBytes) / float64(st.UniqueBytes)
	}
	if st.BlobBytes > 0 {
		st.CompressionRatio = float64(raw) / float64(st.BlobBytes)
	}
	return st, nil
}
