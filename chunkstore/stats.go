package chunkstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
	"github.com/bulwarkbackup/bulwark/chunkstore/index"
)

// Stats describe a store's contents and what each point and source costs.
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

	Sources     []SourceStats `json:"sources"`
	PointsSpace []PointSpace  `json:"points_space"`
	// Computed is when these figures were worked out; they are kept and
	// given again until a point or pack comes or goes.
	Computed time.Time `json:"computed"`
}

// SourceStats are one source's figures.
type SourceStats struct {
	Name        string  `json:"name"`
	Points      int     `json:"points"`
	DataBytes   int64   `json:"data_bytes"`   // not-zero bytes of all its points
	UniqueBytes int64   `json:"unique_bytes"` // plaintext of the chunks they use, each once
	DedupRatio  float64 `json:"dedup_ratio"`  // DataBytes / UniqueBytes
}

// PointSpace is what deleting one point would give back: the chunks and map
// pages that no other point uses, once GC has run.
type PointSpace struct {
	ID         string    `json:"id"`
	Source     string    `json:"source"`
	Time       time.Time `json:"time"`
	DataBytes  int64     `json:"data_bytes"`
	FreesBytes int64     `json:"frees_bytes"` // sealed bytes
	FreesData  int64     `json:"frees_data"`  // their plaintext
}

const statsKey = "stats"

// statsAttempts bounds the passes of Stats over a store that changes under
// it, and with their waits (5 ms, doubling to 500 ms) how long it waits
// for a deletion under way to end: about 1.6 s.
const statsAttempts = 10

// statsCache is Stats as kept in the index, with what they were made from.
type statsCache struct {
	Key   []byte `json:"key"`
	Stats Stats  `json:"stats"`
}

// Stats returns the store's figures. Working out what each point alone
// uses takes a pass over every distinct map page and the index, so the
// answer is kept in the index and given again, in milliseconds, until the
// set of points or packs changes.
func (s *Store) Stats(ctx context.Context) (*Stats, error) {
	points, err := s.Points(ctx)
	if err != nil {
		return nil, err
	}
	key := s.statsKey(points)
	if b, err := s.idx.Meta(statsKey); err == nil && b != nil {
		var c statsCache
		if json.Unmarshal(b, &c) == nil && string(c.Key) == string(key) {
			return &c.Stats, nil
		}
	}
	st, err := s.computeStats(ctx, points)
	// A prune, a deletion or a GC running beside the pass can take away a
	// manifest or map page of the points it listed at its start: the
	// figures are then worked out again over the points and packs there
	// are now. A deletion removes a point's manifest before its catalogue
	// entry, so a missing file is given time to leave the catalogue too.
	// Only a failure over a store that stays unchanged is damage.
	wait := 5 * time.Millisecond
	for attempt := 1; err != nil && attempt < statsAttempts && ctx.Err() == nil; attempt++ {
		gone := errors.Is(err, backend.ErrNotFound)
		if gone {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, 500*time.Millisecond)
		}
		now, lerr := s.Points(ctx)
		if lerr != nil {
			return nil, lerr
		}
		nowKey := s.statsKey(now)
		if string(nowKey) == string(key) {
			if gone {
				continue
			}
			break
		}
		points, key = now, nowKey
		st, err = s.computeStats(ctx, points)
	}
	if err != nil {
		return nil, err
	}
	if b, err := json.Marshal(statsCache{Key: key, Stats: *st}); err == nil {
		if err := s.idx.SetMeta(statsKey, b); err != nil {
			s.log.Warn("stats not kept", "err", err)
		}
	}
	return st, nil
}

// statsKey names the state Stats describe: the points, and the packs by
// their count and the next pack number (a GC deletes and adds packs).
func (s *Store) statsKey(points []*Point) []byte {
	h := sha256.New()
	for _, p := range points {
		h.Write(p.ID[:])
	}
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], s.idx.NextPackNumber())
	binary.LittleEndian.PutUint32(b[4:], uint32(s.idx.PackCount()))
	h.Write(b[:])
	return h.Sum(nil)
}

// owner values of a page or chunk used by more than one point.
const shared = -1

func (s *Store) computeStats(ctx context.Context, points []*Point) (*Stats, error) {
	st := &Stats{Points: len(points), Computed: time.Now().UTC()}
	full := make([]*Point, len(points))
	// A page used by two points makes every chunk in it shared. Which
	// points use a page is known from the manifests alone.
	pageOwner := map[blob.ID]int{}
	for i, p := range points {
		fp, err := s.LoadPoint(ctx, p.ID)
		if err != nil {
			return nil, fmt.Errorf("stats: %w (run \"bulwark check\")", err)
		}
		full[i] = fp
		for _, d := range fp.Disks {
			st.LogicalBytes += d.Capacity
			st.DataBytes += d.DataBytes
			for _, pr := range d.Pages {
				if o, ok := pageOwner[pr.ID]; !ok {
					pageOwner[pr.ID] = i
				} else if o != i {
					pageOwner[pr.ID] = shared
				}
			}
		}
	}
	// A chunk belongs to one point alone when every page holding it does.
	// Sources are walked one at a time, to count each one's chunks once.
	bySource := map[string][]int{}
	var names []string
	for i, p := range points {
		if bySource[p.Source.Name] == nil {
			names = append(names, p.Source.Name)
		}
		bySource[p.Source.Name] = append(bySource[p.Source.Name], i)
	}
	sort.Strings(names)
	chunkOwner := map[uint64]int32{}
	done := idSet{}
	for _, name := range names {
		src := SourceStats{Name: name}
		seen, seenPages := idSet{}, idSet{}
		for _, i := range bySource[name] {
			src.Points++
			for _, d := range full[i].Disks {
				src.DataBytes += d.DataBytes
			}
			err := s.newPages(ctx, full[i], seenPages, func(_ *Disk, pr PageRef, pg diskmap.Page, err error) error {
				if err != nil {
					return fmt.Errorf("stats: point %s: %w (run \"bulwark check\")", full[i].ID.Short(), err)
				}
				first := !done.has(pr.ID)
				done.add(pr.ID)
				owner := int32(pageOwner[pr.ID])
				for _, e := range pg.Extents {
					k := idKey(e.ID)
					if !seen.hasKey(k) {
						seen.addKey(k)
						src.UniqueBytes += e.Length
					}
					if !first {
						continue
					}
					if o, ok := chunkOwner[k]; !ok {
						chunkOwner[k] = owner
					} else if o != owner {
						chunkOwner[k] = shared
					}
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		st.Sources = append(st.Sources, src)
	}
	for id, o := range pageOwner {
		k := idKey(id)
		if c, ok := chunkOwner[k]; !ok {
			chunkOwner[k] = int32(o)
		} else if c != int32(o) {
			chunkOwner[k] = shared
		}
	}

	// Page owners count too: a page goes with its only point. Sealed
	// sizes come from the index, in one pass.
	freesBytes := make([]int64, len(points))
	freesData := make([]int64, len(points))
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
		k := idKey(l.ID)
		if o, ok := chunkOwner[k]; ok && o != shared {
			freesBytes[o] += int64(l.Length)
			freesData[o] += int64(l.RawLength)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := s.idx.Packs(func(p index.PackInfo) error {
		st.Packs++
		st.StoredBytes += p.Size
		return nil
	}); err != nil {
		return nil, err
	}
	for i, p := range points {
		ps := PointSpace{ID: p.ID.String(), Source: p.Source.Name, Time: p.Time, FreesBytes: freesBytes[i], FreesData: freesData[i]}
		for _, d := range p.Disks {
			ps.DataBytes += d.DataBytes
		}
		st.PointsSpace = append(st.PointsSpace, ps)
	}
	for i := range st.Sources {
		if u := st.Sources[i].UniqueBytes; u > 0 {
			st.Sources[i].DedupRatio = float64(st.Sources[i].DataBytes) / float64(u)
		}
	}
	if st.UniqueBytes > 0 {
		st.DedupRatio = float64(st.DataBytes) / float64(st.UniqueBytes)
	}
	if st.BlobBytes > 0 {
		st.CompressionRatio = float64(raw) / float64(st.BlobBytes)
	}
	return st, nil
}
