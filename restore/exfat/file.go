package exfat

import (
	"fmt"

	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/internal/fatchain"
)

// extent maps the clusters of data from first. A contiguous file
// (NoFatChain) is not in the FAT; open data (the root directory, which
// has no length) ends where its chain does, within want clusters.
func (r *Reader) extent(first uint32, want uint32, contiguous, open bool, what string) (*fatchain.Map, error) {
	if contiguous {
		if !r.vol.valid(first) || want > r.vol.clusters-(first-2) {
			return nil, fmt.Errorf("%s: %d contiguous clusters from %d beyond the %d of the volume: %w", what, want, first, r.vol.clusters, fstree.ErrCorrupt)
		}
		return r.chains.Contiguous(first, want, what), nil
	}
	return r.chains.Chained(first, want, open, what), nil
}
