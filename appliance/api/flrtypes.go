package api

import (
	"io/fs"

	"github.com/bulwarkbackup/bulwark/appliance/api/fileapi"
	"github.com/bulwarkbackup/bulwark/restore/fstree"
	"github.com/bulwarkbackup/bulwark/restore/volume"
)

// The file-level types live in fileapi, which the in-guest client imports
// without the rest of the appliance.
type (
	VolumeView   = fileapi.VolumeView
	FileView     = fileapi.FileView
	StreamView   = fileapi.StreamView
	Listing      = fileapi.Listing
	MatchView    = fileapi.MatchView
	SearchResult = fileapi.SearchResult
)

// VolumeRef spells a volume ID as one path segment: see fileapi.VolumeRef.
func VolumeRef(id string) string { return fileapi.VolumeRef(id) }

// SameBIOSUUID reports whether two spellings of a BIOS UUID name one VM:
// see fileapi.SameBIOSUUID.
func SameBIOSUUID(a, b string) bool { return fileapi.SameBIOSUUID(a, b) }

func volumeID(ref string) string { return fileapi.VolumeID(ref) }

func typeName(m fs.FileMode) string { return fileapi.TypeName(m) }

func viewVolume(v *volume.Volume) VolumeView {
	vv := VolumeView{ID: v.ID, Ref: VolumeRef(v.ID), Disk: v.Disk, Kind: v.Kind, FSType: v.FSType, Label: v.Label,
		Offset: v.Offset, Size: v.Size, Warning: v.Warning}
	if v.Err != nil {
		vv.Error = v.Err.Error()
	}
	switch v.Kind {
	case volume.KindDisk, volume.KindPartition, volume.KindLV:
		vv.Browsable = v.Err == nil && v.FSType != ""
	}
	return vv
}

func viewFile(name, p string, m *fstree.Meta) FileView {
	v := FileView{Name: name, Path: p, Type: typeName(m.Mode), Mode: fileapi.UnixMode(m.Mode), Size: m.Size,
		Mtime: m.Mtime, Atime: m.Atime, Ctime: m.Ctime, Btime: m.Btime, Attributes: m.Attributes,
		Inode: m.Inode, Nlink: m.Nlink}
	if m.HasOwner {
		uid, gid := m.UID, m.GID
		v.UID, v.GID = &uid, &gid
	}
	for _, st := range m.Streams {
		v.Streams = append(v.Streams, StreamView{Name: st.Name, Size: st.Size})
	}
	return v
}
