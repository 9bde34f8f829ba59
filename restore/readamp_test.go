package restore_test

import (
	"path/filepath"
	"testing"
)

// TestFileRestoreReadAmplification guards what BenchmarkFileRestore
// measures, on a smaller disk: restoring one 10 MiB file out of a point
// reads less than 3 times its size from the store, opening the store,
// finding the volumes and walking the filesystem included.
func TestFileRestoreReadAmplification(t *testing.T) {
	fx := loadFixture(t, filepath.Join(t.TempDir(), "fixture"), fixtureSpec{ImageSize: 256 << 20, Data: 120 << 20, Seed: 2})
	st := restoreOneFile(t, fx)
	ratio := float64(st.read) / float64(fx.Size)
	t.Logf("read %d bytes in %d loads for a %d-byte file: %.2f times its size", st.read, st.loads, fx.Size, ratio)
	if ratio >= 3 {
		t.Errorf("restoring %s read %.2f times its size from the store, want less than 3", fx.File, ratio)
	}
}
