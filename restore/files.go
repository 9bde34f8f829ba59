package restore

import (
	"context"
	"fmt"

	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/chunkstore/blob"
	"github.com/bulwarkbackup/bulwark/restore/volume"
)

// Volumes finds the volumes of a point's disks, each readable as a
// filesystem with Open. Reads fetch only the chunks they touch; ctx bounds
// them all, so it must live as long as the volumes are used.
func Volumes(ctx context.Context, store *chunkstore.Store, point blob.ID) ([]volume.Volume, error) {
	p, err := store.LoadPoint(ctx, point)
	if err != nil {
		return nil, err
	}
	var disks []volume.Disk
	for _, d := range p.Disks {
		r, err := store.OpenDisk(ctx, point, d.Index)
		if err != nil {
			return nil, err
		}
		disks = append(disks, volume.Disk{Index: d.Index, ReaderAt: r, Size: r.Size()})
	}
	vols, err := volume.Discover(ctx, disks, volume.Standard())
	if err != nil {
		return nil, fmt.Errorf("volumes of point %s: %w", point.Short(), err)
	}
	return vols, nil
}

// FindVolume picks a volume by ID.
func FindVolume(vols []volume.Volume, id string) (*volume.Volume, error) {
	var ids []string
	for i := range vols {
		if vols[i].ID == id {
			return &vols[i], nil
		}
		ids = append(ids, vols[i].ID)
	}
	return nil, fmt.Errorf("no volume %q: the point has %v", id, ids)
}
