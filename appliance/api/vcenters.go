package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/bulwarkbackup/bulwark/jobs"
)

// VCenterView is a vCenter as the API shows it: never its password.
type VCenterView struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Username string `json:"username"`
	// PasswordSource is "env:NAME" or "sealed" (kept sealed under the
	// store's key).
	PasswordSource string    `json:"password_source"`
	Thumbprint     string    `json:"thumbprint,omitempty"`
	Insecure       bool      `json:"insecure,omitempty"`
	FromConfig     bool      `json:"from_config,omitempty"`
	Added          time.Time `json:"added,omitzero"`
}

// NewVCenter adds a vCenter. The password is kept sealed under the store's
// key; Thumbprint pins the certificate, or Insecure accepts any.
type NewVCenter struct {
	Name       string `json:"name"`
	URL        string `json:"url"`
	Username   string `json:"username"`
	Password   string `json:"password"`
	Thumbprint string `json:"thumbprint,omitempty"`
	Insecure   bool   `json:"insecure,omitempty"`
	// Replace allows replacing a vCenter of the same name.
	Replace bool `json:"replace,omitempty"`
}

// VCenterTest reports a successful login.
type VCenterTest struct {
	Name         string `json:"name"`
	InstanceUUID string `json:"instance_uuid"`
}

func viewVCenter(v jobs.VCenter) VCenterView {
	src := "sealed"
	if v.PasswordEnv != "" {
		src = "env:" + v.PasswordEnv
	}
	return VCenterView{Name: v.Name, URL: v.URL, Username: v.Username, PasswordSource: src,
		Thumbprint: v.Thumbprint, Insecure: v.Insecure, FromConfig: v.FromConfig, Added: v.Added}
}

func (s *Server) listVCenters(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	vcs, err := s.d.State.VCenters()
	if err != nil {
		return nil, err
	}
	out := make([]VCenterView, len(vcs))
	for i, v := range vcs {
		out[i] = viewVCenter(v)
	}
	return out, nil
}

func (s *Server) vcenter(r *http.Request) (jobs.VCenter, error) {
	name := r.PathValue("name")
	if err := jobs.CheckName("vCenter", name); err != nil {
		return jobs.VCenter{}, errBadRequest("%v", err)
	}
	return s.d.State.VCenter(name)
}

func (s *Server) getVCenter(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	v, err := s.vcenter(r)
	if err != nil {
		return nil, err
	}
	return viewVCenter(v), nil
}

func (s *Server) addVCenter(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var req NewVCenter
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Password == "" {
		return nil, errBadRequest("vCenter %s: empty password", req.Name)
	}
	rec := jobs.VCenter{Name: req.Name, URL: req.URL, Username: req.Username,
		Thumbprint: req.Thumbprint, Insecure: req.Insecure, PasswordSealed: []byte{0}}
	// Validated with a stand-in password: sealing comes after the login.
	if err := rec.Validate(); err != nil {
		return nil, errBadRequest("%v", err)
	}
	switch old, err := s.d.State.VCenter(req.Name); {
	case err == nil && old.FromConfig:
		return nil, errConflict("vCenter %s is defined in the configuration file: change it there", req.Name)
	case err == nil && !req.Replace:
		return nil, errConflict("vCenter %s exists: set replace to change it", req.Name)
	case err != nil && !errors.Is(err, jobs.ErrNotFound):
		return nil, err
	}
	rec.PasswordSealed = nil
	if _, err := s.d.VCenters.Test(r.Context(), rec, []byte(req.Password)); err != nil {
		s.audit(c, "", "add vCenter", req.Name, "failed", err.Error())
		return nil, errBadRequest("vCenter %s: %v", req.Name, err)
	}
	rec = s.d.VCenters.Seal(rec, []byte(req.Password))
	if err := s.d.State.PutVCenter(rec); err != nil {
		return nil, err
	}
	s.d.VCenters.Forget(r.Context(), rec.Name)
	s.audit(c, "", "add vCenter", rec.Name, "ok", rec.URL)
	stored, err := s.d.State.VCenter(rec.Name)
	if err != nil {
		return nil, err
	}
	return viewVCenter(stored), nil
}

func (s *Server) removeVCenter(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	v, err := s.vcenter(r)
	if err != nil {
		return nil, err
	}
	if v.FromConfig {
		return nil, errConflict("vCenter %s is defined in the configuration file: remove it there", v.Name)
	}
	if err := s.d.State.DeleteVCenter(v.Name); err != nil {
		return nil, err
	}
	s.d.VCenters.Forget(r.Context(), v.Name)
	s.audit(c, "", "remove vCenter", v.Name, "ok", "")
	return nil, nil
}

func (s *Server) testVCenter(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	v, err := s.vcenter(r)
	if err != nil {
		return nil, err
	}
	uuid, err := s.d.VCenters.Test(r.Context(), v, nil)
	if err != nil {
		return nil, errBadRequest("vCenter %s: %v", v.Name, err)
	}
	return VCenterTest{Name: v.Name, InstanceUUID: uuid}, nil
}

func (s *Server) inventory(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	v, err := s.vcenter(r)
	if err != nil {
		return nil, err
	}
	client, err := s.d.VCenters.Client(r.Context(), v.Name)
	if err != nil {
		return nil, newError(http.StatusBadGateway, "vcenter_unreachable", "vCenter %s: %v", v.Name, err)
	}
	return client.Inventory(r.Context())
}
