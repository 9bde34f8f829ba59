package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
)

// PointView is a restore point as the API shows it.
type PointView struct {
	ID          string                 `json:"id"`
	Time        time.Time              `json:"time"`
	Source      chunkstore.Source      `json:"source"`
	Job         string                 `json:"job,omitempty"`
	Parent      string                 `json:"parent,omitempty"`
	Consistency string                 `json:"consistency,omitempty"`
	Pinned      bool                   `json:"pinned"`
	Disks       []DiskView             `json:"disks"`
	Stats       chunkstore.BackupStats `json:"stats"`
	// VMConfig is the VM's configuration as vSphere gave it (govmomi's
	// JSON, with type discriminators); only when a single point is shown.
	VMConfig json.RawMessage `json:"vm_config,omitempty"`
}

// DiskView is one disk of a point.
type DiskView struct {
	Index     int    `json:"index"`
	Label     string `json:"label,omitempty"`
	Capacity  int64  `json:"capacity"`
	DataBytes int64  `json:"data_bytes"`
	ChangeID  string `json:"change_id,omitempty"`
	FullRead  string `json:"full_read,omitempty"`
}

// VMPoints is a VM, or any other source, that has points.
type VMPoints struct {
	Source chunkstore.Source `json:"source"`
	Points int               `json:"points"`
	Oldest time.Time         `json:"oldest"`
	Newest time.Time         `json:"newest"`
	Latest string            `json:"latest"` // the newest point's ID
	// BIOSUUID is the VM's BIOS UUID (config.uuid) in its newest point:
	// the SMBIOS system UUID its guest reads, by which the in-guest
	// client finds its VM. Empty for sources that are not VMs.
	BIOSUUID string `json:"bios_uuid,omitempty"`
}

func viewPoint(p *chunkstore.Point, pinned bool, withConfig bool) PointView {
	v := PointView{ID: p.ID.String(), Time: p.Time, Source: p.Source, Job: p.Job,
		Consistency: p.Consistency, Pinned: pinned, Stats: p.Stats, Disks: make([]DiskView, len(p.Disks))}
	if p.Parent != nil {
		v.Parent = p.Parent.String()
	}
	for i, d := range p.Disks {
		v.Disks[i] = DiskView{Index: d.Index, Label: d.Label, Capacity: d.Capacity, DataBytes: d.DataBytes,
			ChangeID: d.ChangeID, FullRead: d.FullRead}
	}
	if withConfig {
		v.VMConfig = p.VMConfig
	}
	return v
}

// visible reports whether who may see the points of source: a file-restore
// principal sees those of its VM only.
func visible(who auth.Principal, src chunkstore.Source) bool {
	return who.Role != auth.RoleFileRestore || who.VM != "" && src.Name == who.VM
}

// matchesVM reports whether src is the VM that the vm query names.
func matchesVM(src chunkstore.Source, vm string) bool {
	return vm == "" || src.Name == vm || src.VMUUID != "" && src.VMUUID == vm || src.VMName == vm
}

func (s *Server) listVMs(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	points, err := s.d.Store.Points(r.Context())
	if err != nil {
		return nil, err
	}
	bySource := map[string]*VMPoints{}
	out := []*VMPoints{}
	for _, p := range points { // oldest first
		if !visible(c.who, p.Source) {
			continue
		}
		v := bySource[p.Source.Name]
		if v == nil {
			v = &VMPoints{Oldest: p.Time}
			bySource[p.Source.Name] = v
			out = append(out, v)
		}
		v.Source, v.Newest, v.Latest = p.Source, p.Time, p.ID.String()
		v.Points++
	}
	want := r.URL.Query().Get("bios_uuid")
	kept := out[:0]
	for _, v := range out {
		if v.BIOSUUID, err = s.biosUUID(r.Context(), v.Latest); err != nil {
			return nil, err
		}
		if want == "" || SameBIOSUUID(want, v.BIOSUUID) {
			kept = append(kept, v)
		}
	}
	out = kept
	slices.SortFunc(out, func(a, b *VMPoints) int {
		return strings.Compare(a.Source.VMName+"\x00"+a.Source.Name, b.Source.VMName+"\x00"+b.Source.Name)
	})
	return out, nil
}

// biosUUID returns the BIOS UUID in the VM configuration of a point, ""
// if it has none. The catalogue leaves configurations out: the point is
// loaded, once, since a point never changes.
func (s *Server) biosUUID(ctx context.Context, id string) (string, error) {
	s.biosMu.Lock()
	u, ok := s.bios[id]
	s.biosMu.Unlock()
	if ok {
		return u, nil
	}
	pid, err := blob.ParseID(id)
	if err != nil {
		return "", err
	}
	p, err := s.d.Store.LoadPoint(ctx, pid)
	if errors.Is(err, backend.ErrNotFound) {
		return "", nil // deleted since it was listed
	}
	if err != nil {
		return "", err
	}
	var config struct {
		UUID string `json:"uuid"`
	}
	if len(p.VMConfig) > 0 {
		if err := json.Unmarshal(p.VMConfig, &config); err != nil {
			s.log.Warn("a point's VM configuration cannot be read", "point", id, "err", err)
		}
	}
	s.biosMu.Lock()
	if len(s.bios) >= maxBIOSCache {
		clear(s.bios) // crude, but only a store with this many VMs gets here
	}
	s.bios[id] = config.UUID
	s.biosMu.Unlock()
	return config.UUID, nil
}

// maxBIOSCache bounds the BIOS UUIDs kept by point.
const maxBIOSCache = 10000

func (s *Server) listPoints(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	q := r.URL.Query()
	vm, job := q.Get("vm"), q.Get("job")
	limit, err := queryInt(r, "limit", 1000)
	if err != nil {
		return nil, err
	}
	points, err := s.d.Store.Points(r.Context())
	if err != nil {
		return nil, err
	}
	pins, err := s.d.Store.Pinned(r.Context())
	if err != nil {
		return nil, err
	}
	out := []PointView{}
	for i := len(points) - 1; i >= 0 && int64(len(out)) < limit; i-- {
		p := points[i]
		if !visible(c.who, p.Source) || !matchesVM(p.Source, vm) || job != "" && p.Job != job {
			continue
		}
		out = append(out, viewPoint(p, pins[p.ID], false))
	}
	return out, nil
}

// point resolves the {id} of r to a point that the caller may see. A point
// the caller may not see is reported as missing, so that its existence
// leaks nothing.
func (s *Server) point(r *http.Request, c *call) (*chunkstore.Point, error) {
	raw := r.PathValue("id")
	if len(raw) < 8 || len(raw) > 2*len(blob.ID{}) || !isHex(raw) {
		return nil, errBadRequest("invalid point ID %q: want 8 to 64 hex digits", raw)
	}
	// The prefix is matched among the points the caller may see only, so
	// that an ambiguity with a hidden point tells a scoped token nothing.
	points, err := s.d.Store.Points(r.Context())
	if err != nil {
		return nil, err
	}
	var match []blob.ID
	prefix := strings.ToLower(raw)
	for _, p := range points {
		if visible(c.who, p.Source) && strings.HasPrefix(p.ID.String(), prefix) {
			match = append(match, p.ID)
		}
	}
	switch {
	case len(match) == 0:
		if c.who.Role == auth.RoleFileRestore {
			s.audit(c, "", "read point", raw, "denied", "not a point of the token's VM")
		}
		return nil, errNotFound("point %s: not found", raw)
	case len(match) > 1:
		return nil, errBadRequest("point %s is ambiguous: %d points match; give more digits", raw, len(match))
	}
	id := match[0]
	p, err := s.d.Store.LoadPoint(r.Context(), id)
	if errors.Is(err, backend.ErrNotFound) {
		// Deleted since it was listed.
		return nil, errNotFound("point %s: not found", raw)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func (s *Server) pinned(r *http.Request, id blob.ID) (bool, error) {
	pins, err := s.d.Store.Pinned(r.Context())
	return pins[id], err
}

func (s *Server) getPoint(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	p, err := s.point(r, c)
	if err != nil {
		return nil, err
	}
	pinned, err := s.pinned(r, p.ID)
	if err != nil {
		return nil, err
	}
	return viewPoint(p, pinned, true), nil
}

func (s *Server) pinPoint(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	p, err := s.point(r, c)
	if err != nil {
		return nil, err
	}
	if err := s.d.Store.Pin(r.Context(), p.ID); err != nil {
		return nil, err
	}
	s.audit(c, "", "pin point", p.ID.String(), "ok", "")
	return viewPoint(p, true, false), nil
}

func (s *Server) unpinPoint(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	p, err := s.point(r, c)
	if err != nil {
		return nil, err
	}
	if _, err := s.d.Store.Unpin(r.Context(), p.ID); err != nil {
		return nil, err
	}
	s.audit(c, "", "unpin point", p.ID.String(), "ok", "")
	return viewPoint(p, false, false), nil
}

func (s *Server) deletePoint(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	p, err := s.point(r, c)
	if err != nil {
		return nil, err
	}
	if pinned, err := s.pinned(r, p.ID); err != nil {
		return nil, err
	} else if pinned {
		return nil, errConflict("point %s is pinned: unpin it first", p.ID)
	}
	if err := s.d.Store.DeletePoint(r.Context(), p.ID); err != nil {
		s.audit(c, "", "delete point", p.ID.String(), "failed", err.Error())
		return nil, err
	}
	s.audit(c, "", "delete point", p.ID.String(), "ok", p.Source.VMName)
	return nil, nil
}
