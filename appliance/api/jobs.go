package api

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/bulwarkbackup/bulwark/jobs"
)

// JobView is a job with what the scheduler and the history say of it.
type JobView struct {
	jobs.Job
	NextRun time.Time `json:"next_run,omitzero"` // zero when disabled
	Running bool      `json:"running"`
	LastRun *jobs.Run `json:"last_run,omitempty"`
}

// RunStarted answers a request to run a job.
type RunStarted struct {
	Job   string `json:"job"`
	RunID string `json:"run_id"`
	// TaskID is the task that follows the run in /tasks and the events.
	TaskID string `json:"task_id,omitempty"`
}

func (s *Server) viewJob(j jobs.Job) (JobView, error) {
	v := JobView{Job: j, Running: slices.Contains(s.d.Runner.Running(), j.Name)}
	if j.Enabled {
		next, err := j.Next(time.Now())
		if err == nil {
			v.NextRun = next
		}
	}
	runs, err := s.d.State.Runs(j.Name, 1)
	if err != nil {
		return JobView{}, err
	}
	if len(runs) > 0 {
		v.LastRun = &runs[0]
	}
	return v, nil
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	all, err := s.d.State.Jobs()
	if err != nil {
		return nil, err
	}
	out := make([]JobView, 0, len(all))
	for _, j := range all {
		v, err := s.viewJob(j)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Server) job(r *http.Request) (jobs.Job, error) {
	name := r.PathValue("name")
	if err := jobs.CheckName("job", name); err != nil {
		return jobs.Job{}, errBadRequest("%v", err)
	}
	return s.d.State.Job(name)
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	j, err := s.job(r)
	if err != nil {
		return nil, err
	}
	return s.viewJob(j)
}

// putJob validates and stores j, and has the scheduler see it.
func (s *Server) putJob(c *call, j jobs.Job, action string) (any, error) {
	if err := j.Validate(); err != nil {
		return nil, errBadRequest("%v", err)
	}
	if j.VCenter != "" {
		if _, err := s.d.State.VCenter(j.VCenter); errors.Is(err, jobs.ErrNotFound) {
			return nil, errBadRequest("job %s: no vCenter called %s", j.Name, j.VCenter)
		}
	}
	if err := s.d.State.PutJob(j); err != nil {
		return nil, err
	}
	if s.d.Scheduler != nil {
		s.d.Scheduler.Reload()
	}
	s.audit(c, "", action, j.Name, "ok", "")
	stored, err := s.d.State.Job(j.Name)
	if err != nil {
		return nil, err
	}
	return s.viewJob(stored)
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	var j jobs.Job
	if err := decode(r, &j); err != nil {
		return nil, err
	}
	if err := jobs.CheckName("job", j.Name); err != nil {
		return nil, errBadRequest("%v", err)
	}
	if _, err := s.d.State.Job(j.Name); err == nil {
		return nil, errConflict("job %s exists: change it with PUT %s/jobs/%s", j.Name, Prefix, j.Name)
	} else if !errors.Is(err, jobs.ErrNotFound) {
		return nil, err
	}
	return s.putJob(c, j, "create job")
}

func (s *Server) updateJob(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	old, err := s.job(r)
	if err != nil {
		return nil, err
	}
	var j jobs.Job
	if err := decode(r, &j); err != nil {
		return nil, err
	}
	switch j.Name {
	case "":
		j.Name = old.Name
	case old.Name:
	default:
		return nil, errBadRequest("the body names job %s, the path %s: a job cannot be renamed", j.Name, old.Name)
	}
	return s.putJob(c, j, "update job")
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	j, err := s.job(r)
	if err != nil {
		return nil, err
	}
	if slices.Contains(s.d.Runner.Running(), j.Name) {
		return nil, errConflict("job %s is running: cancel it first", j.Name)
	}
	if err := s.d.State.DeleteJob(j.Name); err != nil {
		return nil, err
	}
	if s.d.Scheduler != nil {
		s.d.Scheduler.Reload()
	}
	s.audit(c, "", "delete job", j.Name, "ok", "")
	return nil, nil
}

func (s *Server) enableJob(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	return s.setEnabled(r, c, true)
}

func (s *Server) disableJob(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	return s.setEnabled(r, c, false)
}

func (s *Server) setEnabled(r *http.Request, c *call, on bool) (any, error) {
	j, err := s.job(r)
	if err != nil {
		return nil, err
	}
	j.Enabled = on
	action := "disable job"
	if on {
		action = "enable job"
	}
	return s.putJob(c, j, action)
}

func (s *Server) runJob(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	j, err := s.job(r)
	if err != nil {
		return nil, err
	}
	e, err := s.d.Runner.Start(s.d.RunContext, j, jobs.TriggerManual, time.Time{})
	if err != nil {
		if errors.Is(err, jobs.ErrAlreadyRunning) {
			return nil, errConflict("%v", err)
		}
		return nil, errBadRequest("%v", err)
	}
	s.audit(c, "", "run job", j.Name, "ok", "run "+e.ID())
	out := RunStarted{Job: j.Name, RunID: e.ID()}
	if s.d.Jobs != nil {
		out.TaskID = s.d.Jobs.TaskOf(e.ID())
	}
	return out, nil
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	j, err := s.job(r)
	if err != nil {
		return nil, err
	}
	if !s.d.Runner.Cancel(j.Name) {
		return nil, errConflict("job %s is not running", j.Name)
	}
	s.audit(c, "", "cancel job", j.Name, "ok", "")
	return nil, nil
}

func (s *Server) jobRuns(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	j, err := s.job(r)
	if err != nil {
		return nil, err
	}
	limit, err := queryInt(r, "limit", 50)
	if err != nil {
		return nil, err
	}
	runs, err := s.d.State.Runs(j.Name, int(min(limit, 1000)))
	if runs == nil && err == nil {
		runs = []jobs.Run{}
	}
	return runs, err
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, c *call) (any, error) {
	return s.d.State.Run(r.PathValue("id"))
}

// queryInt reads a non-negative integer query parameter.
func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errBadRequest("query parameter %s=%q: want a non-negative integer", name, v)
	}
	return n, nil
}
