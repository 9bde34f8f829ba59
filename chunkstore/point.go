package chunkstore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/diskmap"
)

// Point is a restore point's manifest. It is immutable once written; its ID
// is the SHA-256 of its sealed bytes.
type Point struct {
	ID      blob.ID   `json:"-"`
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	Source  Source    `json:"source"`
	Job     string    `json:"job,omitempty"`
	Parent  *blob.ID  `json:"parent,omitempty"`
	// Consistency says how the source was frozen: "quiesced",
	// "crash-consistent", or "image" for an image file taken as it is.
	Consistency string          `json:"consistency,omitempty"`
	VMConfig    json.RawMessage `json:"vm_config,omitempty"`
	Disks       []Disk          `json:"disks"`
	Stats       BackupStats     `json:"stats"`
}

// Source identifies what a point is a backup of. Points are grouped by it.
type Source struct {
	Name    string `json:"name"`
	VCenter string `json:"vcenter,omitempty"`
	VMUUID  string `json:"vm_uuid,omitempty"`
	MoRef   string `json:"moref,omitempty"`
	VMName  string `json:"vm_name,omitempty"`
}

// Disk is one disk of a point.
type Disk struct {
	Index    int    `json:"index"`
	Label    string `json:"label,omitempty"`
	Capacity int64  `json:"capacity"`
	ChangeID string `json:"change_id,omitempty"`
	// FullRead says why the disk was read whole rather than incrementally;
	// empty for an incremental.
	FullRead  string    `json:"full_read,omitempty"`
	DataBytes int64     `json:"data_bytes"` // bytes not zero
	Extents   int       `json:"extents"`
	Pages     []PageRef `json:"pages"`
}

// PageRef names the map page of one span of a disk.
type PageRef struct {
	Index int64   `json:"index"`
	ID    blob.ID `json:"id"`
}

// BackupStats count a backup's work.
type BackupStats struct {
	BytesRead   int64   `json:"bytes_read"`   // read from the source
	BytesNew    int64   `json:"bytes_new"`    // of chunks not in the store before
	BytesStored int64   `json:"bytes_stored"` // sealed bytes added to packs, map pages included
	Chunks      int64   `json:"chunks"`       // chunks cut
	NewChunks   int64   `json:"new_chunks"`
	Seconds     float64 `json:"seconds"`
}

func (a *BackupStats) add(b BackupStats) {
	a.BytesRead += b.BytesRead
	a.BytesNew += b.BytesNew
	a.BytesStored += b.BytesStored
	a.Chunks += b.Chunks
	a.NewChunks += b.NewChunks
}

const pointVersion = 1

var pointAD = []byte("bulwark point v1")

// DecodePoint decodes and checks a manifest's plaintext.
func DecodePoint(b []byte) (*Point, error) {
	var p Point
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode point: %w", err)
	}
	if p.Version != pointVersion {
		return nil, fmt.Errorf("point version %d not supported", p.Version)
	}
	seen := map[int]bool{}
	for _, d := range p.Disks {
		if d.Capacity < 0 || seen[d.Index] || d.Index < 0 {
			return nil, fmt.Errorf("point: disk %d: bad capacity or repeated index", d.Index)
		}
		if d.Extents < 0 || int64(d.Extents) > d.Capacity || d.DataBytes < 0 || d.DataBytes > d.Capacity {
			return nil, fmt.Errorf("point: disk %d: %d extents, %d data bytes do not fit %d bytes", d.Index, d.Extents, d.DataBytes, d.Capacity)
		}
		seen[d.Index] = true
		prev := int64(-1)
		for _, pr := range d.Pages {
			if pr.Index <= prev || pr.Index > d.Capacity/diskmap.PageSpan || pr.Index*diskmap.PageSpan >= d.Capacity {
				return nil, fmt.Errorf("point: disk %d: map pages out of order or beyond the disk", d.Index)
			}
			prev = pr.Index
		}
	}
	return &p, nil
}

// Disk returns the point's disk with the given index.
func (p *Point) Disk(index int) (*Disk, error) {
	for i := range p.Disks {
		if p.Disks[i].Index == index {
			return &p.Disks[i], nil
		}
	}
	return nil, fmt.Errorf("point %s has no disk %d", p.ID.Short(), index)
}

// writePoint makes p durable and catalogues it; its ID is set.
func (s *Store) writePoint(ctx context.Context, p *Point) error {
	plain, err := json.Marshal(p)
	if err != nil {
		return err
	}
	sealed := s.key.Seal(nil, plain, pointAD)
	p.ID = sha256.Sum256(sealed)
	if err := s.be.Save(ctx, backend.Handle{Kind: backend.Points, Name: p.ID.String()}, sealed); err != nil {
		return fmt.Errorf("write point %s: %w", p.ID.Short(), err)
	}
	return s.catalogue(p)
}

// catalogue records p in the index, sealed like the manifest, without its
// map pages and VM configuration.
func (s *Store) catalogue(p *Point) error {
	c := *p
	c.VMConfig = nil
	c.Disks = make([]Disk, len(p.Disks))
	for i, d := range p.Disks {
		d.Pages = nil
		c.Disks[i] = d
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	return s.idx.PutPoint(p.ID, s.key.Seal(nil, b, pointAD))
}

// LoadPoint reads a point's manifest from the backend.
func (s *Store) LoadPoint(ctx context.Context, id blob.ID) (*Point, error) {
	sealed, err := s.be.Load(ctx, backend.Handle{Kind: backend.Points, Name: id.String()}, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("point %s: %w", id.Short(), err)
	}
	if blob.ID(sha256.Sum256(sealed)) != id {
		return nil, fmt.Errorf("point %s: manifest does not match its name (damaged)", id.Short())
	}
	plain, err := s.key.Open(nil, sealed, pointAD)
	if err != nil {
		return nil, fmt.Errorf("point %s: manifest: %w", id.Short(), err)
	}
	p, err := DecodePoint(plain)
	if err != nil {
		return nil, fmt.Errorf("point %s: %w", id.Short(), err)
	}
	p.ID = id
	return p, nil
}

// Points lists the catalogued points, oldest first. Their Disks carry no
// map pages; LoadPoint reads a whole manifest.
func (s *Store) Points(ctx context.Context) ([]*Point, error) {
	var out []*Point
	err := s.idx.Points(func(id blob.ID, sealed []byte) error {
		plain, err := s.key.Open(nil, sealed, pointAD)
		if err != nil {
			return fmt.Errorf("catalogue entry of point %s: %w", id.Short(), err)
		}
		p, err := DecodePoint(plain)
		if err != nil {
			return fmt.Errorf("catalogue entry of point %s: %w", id.Short(), err)
		}
		p.ID = id
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	return out, nil
}

// ErrNoPoint is returned when a point ID or prefix matches no point.
var ErrNoPoint = errors.New("no such point")

// ResolvePoint finds the point whose ID starts with prefix (at least 4 hex
// digits), or with "latest" the newest point of source (of any source when
// source is empty).
func (s *Store) ResolvePoint(ctx context.Context, prefix, source string) (blob.ID, error) {
	points, err := s.Points(ctx)
	if err != nil {
		return blob.ID{}, err
	}
	if prefix == "latest" {
		for i := len(points) - 1; i >= 0; i-- {
			if source == "" || points[i].Source.Name == source {
				return points[i].ID, nil
			}
		}
		if source != "" {
			return blob.ID{}, fmt.Errorf("latest of source %q: %w", source, ErrNoPoint)
		}
		return blob.ID{}, fmt.Errorf("latest: %w", ErrNoPoint)
	}
	prefix = strings.ToLower(prefix)
	if len(prefix) < 4 {
		return blob.ID{}, fmt.Errorf("point %q: give at least 4 hex digits", prefix)
	}
	var match []blob.ID
	for _, p := range points {
		if strings.HasPrefix(p.ID.String(), prefix) {
			match = append(match, p.ID)
		}
	}
	switch len(match) {
	case 0:
		return blob.ID{}, fmt.Errorf("point %q: %w", prefix, ErrNoPoint)
	case 1:
		return match[0], nil
	}
	return blob.ID{}, fmt.Errorf("point %q is ambiguous: %d points match", prefix, len(match))
}

// loadMap reads a disk's map from its pages.
func (s *Store) loadMap(ctx context.Context, d *Disk) ([]diskmap.Extent, error) {
	extents := make([]diskmap.Extent, 0, min(d.Extents, 1<<20))
	for _, pr := range d.Pages {
		pg, err := s.loadPage(ctx, d, pr)
		if err != nil {
			return nil, err
		}
		extents = append(extents, pg.Extents...)
	}
	if err := diskmap.Validate(extents, d.Capacity); err != nil {
		return nil, fmt.Errorf("disk %d map: %w", d.Index, err)
	}
	return extents, nil
}

// loadPage reads and decodes one map page of a disk.
func (s *Store) loadPage(ctx context.Context, d *Disk, pr PageRef) (diskmap.Page, error) {
	b, err := s.loadBlob(ctx, pr.ID)
	if err != nil {
		return diskmap.Page{}, fmt.Errorf("disk %d map page %d: %w", d.Index, pr.Index, err)
	}
	pg, err := diskmap.DecodePage(b, d.Capacity)
	if err != nil {
		return diskmap.Page{}, fmt.Errorf("disk %d map page %d (blob %s): %w", d.Index, pr.Index, pr.ID.Short(), err)
	}
	if pg.Index != pr.Index {
		return diskmap.Page{}, fmt.Errorf("disk %d map page %d: blob %s holds page %d", d.Index, pr.Index, pr.ID.Short(), pg.Index)
	}
	return pg, nil
}
