package jobs

import (
	"errors"
	"strings"
	"testing"
)

const testThumbprint = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD"

func testVCenter(name string) VCenter {
	return VCenter{Name: name, URL: "https://vc.example.com/sdk", Username: "backup@vsphere.local",
		PasswordEnv: "VC_PASSWORD", Thumbprint: testThumbprint}
}

func TestVCenterValidate(t *testing.T) {
	for _, c := range []struct {
		mod  func(*VCenter)
		want string // empty: valid
	}{
		{func(v *VCenter) {}, ""},
		{func(v *VCenter) { v.URL = "vc.example.com" }, ""},
		{func(v *VCenter) { v.Thumbprint, v.Insecure = "", true }, ""},
		{func(v *VCenter) { v.Thumbprint = strings.Repeat("ab", 32) }, ""},
		{func(v *VCenter) { v.Name = "a/b" }, `invalid vCenter name "a/b": '/' is not allowed`},
		{func(v *VCenter) { v.Name = "" }, "invalid vCenter name: empty"},
		{func(v *VCenter) { v.URL = " " }, "vCenter vc1: empty URL"},
		{func(v *VCenter) { v.URL = "https://root:secret@vc/sdk" }, "must not contain credentials"},
		{func(v *VCenter) { v.Username = "" }, "empty user name"},
		{func(v *VCenter) { v.PasswordEnv = "" }, "invalid password environment variable"},
		{func(v *VCenter) { v.PasswordEnv = "1PW" }, "invalid password environment variable"},
		{func(v *VCenter) { v.PasswordEnv = "VC-PW" }, "invalid password environment variable"},
		{func(v *VCenter) { v.Thumbprint = "" }, "no certificate thumbprint"},
		{func(v *VCenter) { v.Insecure = true }, "exclude each other"},
		{func(v *VCenter) { v.Thumbprint = "AA:BB" }, "invalid certificate thumbprint"},
		{func(v *VCenter) { v.Thumbprint = strings.Repeat("zz", 20) }, "invalid certificate thumbprint"},
	} {
		v := testVCenter("vc1")
		c.mod(&v)
		err := v.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", v, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want %q", v, err, c.want)
		}
	}
}

func TestStateVCenters(t *testing.T) {
	dir := t.TempDir()
	s := openState(t, dir)

	if _, err := s.VCenter("vc1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing vCenter: %v", err)
	}
	bad := testVCenter("vc1")
	bad.Thumbprint = ""
	if err := s.PutVCenter(bad); err == nil {
		t.Error("a vCenter without a thumbprint was stored")
	}
	if err := s.PutVCenter(testVCenter("vc1")); err != nil {
		t.Fatal(err)
	}
	first, err := s.VCenter("vc1")
	if err != nil {
		t.Fatal(err)
	}
	if first.Added.IsZero() || first.PasswordEnv != "VC_PASSWORD" || first.Thumbprint != testThumbprint {
		t.Errorf("stored %+v", first)
	}
	// Replacing keeps the time it was added.
	moved := testVCenter("vc1")
	moved.URL = "vc2.example.com"
	if err := s.PutVCenter(moved); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.VCenter("vc1"); got.URL != "vc2.example.com" || !got.Added.Equal(first.Added) {
		t.Errorf("replaced vCenter %+v, want the new URL and the first Added %v", got, first.Added)
	}

	// A job that names none uses the only one, which it then keeps from
	// being deleted.
	implicit := testJob("implicit")
	if err := s.PutJob(implicit); err != nil {
		t.Fatal(err)
	}
	if v, err := s.JobVCenter(implicit); err != nil || v.Name != "vc1" {
		t.Errorf("JobVCenter of a job naming none: %+v, %v", v, err)
	}
	if err := s.DeleteVCenter("vc1"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "implicit") {
		t.Errorf("delete of the only vCenter, used implicitly: %v", err)
	}

	// A second vCenter pins such jobs to the first, so that they back up
	// from where they always did.
	if err := s.PutVCenter(testVCenter("vc2")); err != nil {
		t.Fatal(err)
	}
	if j, err := s.Job("implicit"); err != nil || j.VCenter != "vc1" {
		t.Errorf("after a second vCenter was added, the job names %q (%v), want vc1", j.VCenter, err)
	}
	explicit := testJob("explicit")
	explicit.VCenter = "vc2"
	if err := s.PutJob(explicit); err != nil {
		t.Fatal(err)
	}
	if v, err := s.JobVCenter(explicit); err != nil || v.Name != "vc2" {
		t.Errorf("JobVCenter: %+v, %v", v, err)
	}
	if _, err := s.JobVCenter(testJob("unpinned")); err == nil || !strings.Contains(err.Error(), "names no vCenter, and there are 2") {
		t.Errorf("JobVCenter with two vCenters and none named: %v", err)
	}
	explicit.VCenter = "gone"
	if _, err := s.JobVCenter(explicit); !errors.Is(err, ErrNotFound) {
		t.Errorf("JobVCenter of an unknown vCenter: %v", err)
	}

	vcs, err := s.VCenters()
	if err != nil || len(vcs) != 2 || vcs[0].Name != "vc1" || vcs[1].Name != "vc2" {
		t.Fatalf("VCenters = %+v, %v", vcs, err)
	}
	if err := s.DeleteVCenter("vc2"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "explicit") || strings.Contains(err.Error(), "implicit") {
		t.Errorf("delete of a vCenter in use: %v", err)
	}
	if err := s.DeleteJob("explicit"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVCenter("vc2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVCenter("vc2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}

	// What is stored survives reopening.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openState(t, dir)
	defer s.Close()
	if vcs, err := s.VCenters(); err != nil || len(vcs) != 1 || vcs[0].URL != "vc2.example.com" {
		t.Errorf("after reopening: %+v, %v", vcs, err)
	}
}
