package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/bulwarkbackup/bulwark/chunkstore/backend"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/chunkstore/index"
	"github.com/bulwarkbackup/bulwark/chunkstore/pack"
)

// packer gathers sealed blobs of every backup in the process into packs.
// A full pack is saved by the goroutine whose blob filled it, so saving
// overlaps with the other workers' chunking. A pack's blobs are indexed only
// once it is durable, and only then leave the in-flight set.
type packer struct {
	s      *Store
	mu     sync.Mutex
	w      *pack.Writer
	saving []chan struct{} // one per pack being saved, closed when it is
	err    error           // first save failure; the store takes no more blobs
	free   [][]byte        // buffers of saved packs, for new ones: fresh memory costs page faults
}

func newPacker(s *Store) *packer { return &packer{s: s} }

// claim reports whether the caller should store blob id: it is neither
// indexed nor being stored by someone else. A claimed blob must be added.
// A blob found in the index is recorded as used by the backup, which makes
// it a root for any GC that runs before the backup's point is committed.
func (b *Backup) claim(id blob.ID) (bool, error) {
	s := b.s
	s.mu.Lock()
	if _, ok := s.inflight[id]; ok {
		s.mu.Unlock()
		// Its pack may be indexed already, numbered below this backup's
		// first: it is recorded as used, pack to be looked up.
		b.used(id, 0)
		return false, nil
	}
	s.inflight[id] = struct{}{}
	s.mu.Unlock()
	s.sweep.RLock()
	loc, found, err := s.idx.Lookup(id)
	if found {
		b.used(id, loc.PackNumber)
	}
	s.sweep.RUnlock()
	if found || err != nil {
		s.release([]pack.Entry{{ID: id}})
		return false, err
	}
	return true, nil
}

func (s *Store) release(entries []pack.Entry) {
	s.mu.Lock()
	for _, e := range entries {
		delete(s.inflight, e.ID)
	}
	s.mu.Unlock()
}

// add appends a sealed blob, saving the pack if that filled it.
func (p *packer) add(ctx context.Context, e pack.Entry, sealed []byte) error {
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		p.s.release([]pack.Entry{e})
		return p.err
	}
	if p.w == nil {
		var buf []byte
		if n := len(p.free); n > 0 {
			buf, p.free = p.free[n-1], p.free[:n-1]
		}
		p.w = pack.NewWriter(p.s.cfg.Params.PackSize, buf)
	}
	p.w.Add(e, sealed)
	var full *pack.Writer
	var done func()
	if p.w.Size() >= p.s.cfg.Params.PackSize {
		full, p.w = p.w, nil
		done = p.startSave()
	}
	p.mu.Unlock()
	if full == nil {
		return nil
	}
	defer done()
	return p.save(ctx, full)
}

// startSave records a pack being saved, under p.mu, and returns what marks
// it saved. flush waits for the packs being saved when it is called, not
// for those that other backups start meanwhile.
func (p *packer) startSave() func() {
	ch := make(chan struct{})
	p.saving = append(p.saving, ch)
	return func() {
		p.mu.Lock()
		for i, c := range p.saving {
			if c == ch {
				p.saving = append(p.saving[:i], p.saving[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
		close(ch)
	}
}

func (p *packer) save(ctx context.Context, w *pack.Writer) error {
	data, id, entries := w.Finish(p.s.key)
	err := p.s.be.Save(ctx, backend.Handle{Kind: backend.Packs, Name: id.String()}, data)
	if err == nil {
		err = p.s.idx.AddPack(id, int64(len(data)), entries)
	}
	p.s.release(entries)
	p.mu.Lock()
	if len(p.free) < 2 {
		p.free = append(p.free, data)
	}
	p.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("save pack %s: %w", id.Short(), err)
		p.mu.Lock()
		if p.err == nil {
			p.err = err
		}
		p.mu.Unlock()
		return err
	}
	p.s.log.Debug("pack saved", "pack", id.Short(), "bytes", len(data), "blobs", len(entries))
	return nil
}

// flush saves the open pack and waits for every pack being saved: after it
// returns nil, every blob added before the call is durable and indexed.
func (p *packer) flush(ctx context.Context) error {
	p.mu.Lock()
	w := p.w
	p.w = nil
	var done func()
	if w != nil && w.Count() > 0 {
		done = p.startSave()
	} else {
		w = nil
	}
	waiting := slices.Clone(p.saving)
	p.mu.Unlock()
	if w != nil {
		err := p.save(ctx, w)
		done()
		if err != nil {
			return err
		}
	}
	for _, ch := range waiting {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// loadBlob reads, opens and verifies an indexed blob.
func (s *Store) loadBlob(ctx context.Context, id blob.ID) ([]byte, error) {
	loc, found, err := s.idx.Lookup(id)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("blob %s is not in the index", id.Short())
	}
	plain, err := s.loadAt(ctx, loc)
	if errors.Is(err, backend.ErrNotFound) {
		// A GC may have moved the blob to a new pack since the lookup; a
		// reader learns of the new pack from the backend.
		if s.readOnly {
			s.refreshMu.Lock()
			rerr := s.reconcilePacks(ctx)
			s.refreshMu.Unlock()
			if rerr != nil {
				return nil, rerr
			}
		}
		if again, found, lerr := s.idx.Lookup(id); lerr == nil && found && again.Pack != loc.Pack {
			return s.loadAt(ctx, again)
		}
	}
	return plain, err
}

func (s *Store) loadAt(ctx context.Context, loc index.Location) ([]byte, error) {
	sealed, err := s.be.Load(ctx, backend.Handle{Kind: backend.Packs, Name: loc.Pack.String()}, int64(loc.Offset), int(loc.Length))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", loc.ID.Short(), err)
	}
	plain, err := s.codec.Open(loc.Entry, sealed)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", loc.Pack.Short(), err)
	}
	return plain, nil
}
