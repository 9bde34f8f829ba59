package api

import (
	"net/http"
	"strconv"

	"github.com/bulwarkbackup/bulwark/appliance/tasks"
)

// Health is what /healthz says.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version,omitempty"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	return Health{Status: "ok", Version: s.d.Version}, nil
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	s.d.Metrics.Handler().ServeHTTP(w, r)
	return nil, nil
}

func (s *Server) openAPIDoc(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.doc)
	return nil, nil
}

func (s *Server) events(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	if v := r.URL.Query().Get("after"); v != "" {
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return nil, errBadRequest("after=%q: want an event ID", v)
		}
	}
	s.d.Hub.ServeSSE(w, r, nil, s.d.Keepalive)
	return nil, nil
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	limit, err := queryInt(r, "limit", 100)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	list, err := s.d.Tasks.List(tasks.Filter{Kind: q.Get("kind"), State: tasks.State(q.Get("state")), Limit: int(min(limit, 1000))})
	if list == nil && err == nil {
		list = []tasks.Task{}
	}
	return list, err
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	return s.d.Tasks.Get(r.PathValue("id"))
}

func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	id := r.PathValue("id")
	if err := s.d.Tasks.Cancel(id); err != nil {
		return nil, err
	}
	s.audit(c, "", "cancel task", id, "ok", "")
	return nil, nil
}
