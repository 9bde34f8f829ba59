//go:build !unix

package files

import "io/fs"

// hostMeta has nothing to add where the host's stat has no inodes and
// owners.
func hostMeta(fs.FileInfo, *fileMeta) {}
