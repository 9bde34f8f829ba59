package fileapi

import (
	"io/fs"
	"testing"
)

func TestSameBIOSUUID(t *testing.T) {
	const u = "4211d0a4-5b3c-6e7f-8091-a2b3c4d5e6f7"
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{u, u, true},
		{u, "4211D0A4-5B3C-6E7F-8091-A2B3C4D5E6F7", true},
		{u, "a4d01142-3c5b-7f6e-8091-a2b3c4d5e6f7", true},            // SMBIOS 2.6 order
		{u, "{4211d0a45b3c6e7f8091a2b3c4d5e6f7}", true},              // braced, no dashes
		{u, "42 11 d0 a4 5b 3c 6e 7f-80 91 a2 b3 c4 d5 e6 f7", true}, // vmx spelling
		{u, "4211d0a4-5b3c-6e7f-8091-a2b3c4d5e6f8", false},
		{u, "a4d01142-5b3c-6e7f-8091-a2b3c4d5e6f7", false}, // half swapped
		{u, "", false},
		{"", "", false},
		{"00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000", false},
		{u, "not a uuid", false},
	} {
		if got := SameBIOSUUID(tc.a, tc.b); got != tc.want {
			t.Errorf("SameBIOSUUID(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestUnixMode(t *testing.T) {
	for _, m := range []fs.FileMode{
		0o644, fs.ModeDir | 0o755, fs.ModeSymlink | 0o777, fs.ModeDevice | 0o660,
		fs.ModeDevice | fs.ModeCharDevice | 0o620, fs.ModeNamedPipe | 0o600, fs.ModeSocket | 0o755,
		fs.ModeSetuid | 0o4755&0o777, fs.ModeDir | fs.ModeSticky | 0o777, fs.ModeSetgid | fs.ModeDir | 0o2775&0o777,
	} {
		if got := FileModeOf(UnixMode(m)); got != m {
			t.Errorf("FileModeOf(UnixMode(%v)) = %v", m, got)
		}
	}
	if u := UnixMode(fs.ModeDir | 0o755); u != 0o40755 {
		t.Errorf("UnixMode(dir 755) = %o", u)
	}
	if TypeName(fs.ModeDevice|fs.ModeCharDevice) != "char-device" || TypeName(fs.ModeDevice) != "block-device" {
		t.Error("device type names")
	}
}

func TestVolumeRef(t *testing.T) {
	for _, id := range []string{"d0", "d1p5", "vg0/root", "vg-data/lv_home.x"} {
		ref := VolumeRef(id)
		if VolumeID(ref) != id {
			t.Errorf("VolumeID(VolumeRef(%q)) = %q", id, VolumeID(ref))
		}
		for _, c := range ref {
			if c == '/' || c == '\\' {
				t.Errorf("VolumeRef(%q) = %q holds a separator", id, ref)
			}
		}
	}
}
