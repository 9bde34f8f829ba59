package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/bulwarkbackup/bulwark/jobs/statedb"
)

// The state database holds JSON values under these keys:
//
//	job/<name>               a Job
//	vcenter/<name>           a VCenter (see vcenter.go)
//	run/<job>/<id as %016x>  a Run; the hex ID makes keys sort by age
//	runid/<id as %016x>      the job of run <id>, to find a run by its ID
//	running/<id as %016x>    the job of run <id>, while it is recorded as
//	                         running, so that OpenState finds the runs a
//	                         crash interrupted without reading all history
//	meta/next-run            the next run ID, in decimal
//
// Job names cannot contain '/', so a job's prefix never covers another's.
const (
	jobPrefix     = "job/"
	runPrefix     = "run/"
	runIDPrefix   = "runid/"
	runningPrefix = "running/"
	nextRunKey    = "meta/next-run"
)

var (
	// ErrNotFound is returned, wrapped, for a job or run that does not exist.
	ErrNotFound = errors.New("not found")

	// ErrStateLocked is returned, wrapped, by OpenState when another
	// process has the state directory open.
	ErrStateLocked = statedb.ErrLocked
)

// State is the appliance's database of jobs and their history. It is safe
// for concurrent use.
type State struct {
	db    *badger.DB
	owned bool // whether Close closes db
	dir   string
	log   *slog.Logger

	mu     sync.Mutex // serialises the allocation of run IDs
	nextID uint64
}

// OpenState opens or creates the state database in dir, and closes it when
// the State is closed. Runs that a previous process left marked as running
// are marked failed: no run of this process can have started yet, and only
// one process can open dir.
func OpenState(dir string, log *slog.Logger) (*State, error) {
	db, err := OpenDB(dir, log)
	if err != nil {
		return nil, err
	}
	s, err := NewState(db, log)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// OpenDB opens or creates the appliance's state database in dir: see
// package statedb.
func OpenDB(dir string, log *slog.Logger) (*badger.DB, error) { return statedb.Open(dir, log) }

// NewState returns the jobs' State kept in db, under the key prefixes
// above; closing the State leaves db open. Like OpenState, it marks failed
// the runs that a previous process left running, so it must be called
// once per process, before any run starts.
func NewState(db *badger.DB, log *slog.Logger) (*State, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &State{db: db, dir: db.Opts().Dir, log: log}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("open job state %s: %w", s.dir, err)
	}
	return s, nil
}

func (s *State) load() error {
	err := s.db.View(func(txn *badger.Txn) error {
		return statedb.Get(txn, nextRunKey, &s.nextID)
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		s.nextID = 1
	case err != nil:
		return fmt.Errorf("read next run ID: %w", err)
	}
	return s.recoverInterrupted()
}

// Close closes the database if OpenState opened it.
func (s *State) Close() error {
	if !s.owned {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close job state %s: %w", s.dir, err)
	}
	return nil
}

// PutJob validates j and stores it, replacing the job of the same name. It
// keeps the creation time of the job it replaces and sets Updated to now.
func (s *State) PutJob(j Job) error {
	if err := j.Validate(); err != nil {
		return err
	}
	now := time.Now().UTC().Round(0)
	err := s.db.Update(func(txn *badger.Txn) error {
		var old Job
		switch err := statedb.Get(txn, jobPrefix+j.Name, &old); {
		case err == nil:
			j.Created = old.Created
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		case j.Created.IsZero():
			j.Created = now
		}
		j.Updated = now
		return statedb.Set(txn, jobPrefix+j.Name, j)
	})
	if err != nil {
		return fmt.Errorf("store job %s: %w", j.Name, err)
	}
	return nil
}

// Job returns the job called name.
func (s *State) Job(name string) (Job, error) {
	var j Job
	err := s.db.View(func(txn *badger.Txn) error { return statedb.Get(txn, jobPrefix+name, &j) })
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Job{}, fmt.Errorf("job %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Job{}, fmt.Errorf("load job %s: %w", name, err)
	}
	return j, nil
}

// Jobs returns all jobs, sorted by name.
func (s *State) Jobs() ([]Job, error) {
	var jobs []Job
	err := s.db.View(func(txn *badger.Txn) error {
		return statedb.Scan(txn, jobPrefix, false, func(key string, v []byte) (bool, error) {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return false, fmt.Errorf("job %s: %w", strings.TrimPrefix(key, jobPrefix), err)
			}
			jobs = append(jobs, j)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load jobs: %w", err)
	}
	return jobs, nil
}

// DeleteJob deletes the job called name. Its history stays, so that what
// was backed up, and when, can still be told.
func (s *State) DeleteJob(name string) error {
	err := s.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(jobPrefix + name)); err != nil {
			return err
		}
		return txn.Delete([]byte(jobPrefix + name))
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("delete job %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete job %s: %w", name, err)
	}
	return nil
}

// AddRun stores r in the history and returns its ID. A run without an ID
// is given a new one; a run with an ID replaces the stored run of that ID,
// which is how a run recorded as running at its start gets its end.
func (s *State) AddRun(r Run) (string, error) {
	if err := CheckName("job", r.Job); err != nil {
		return "", fmt.Errorf("store run: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var id uint64
	if r.ID == "" {
		id = s.nextID
		r.ID = strconv.FormatUint(id, 10)
	} else {
		var err error
		if id, err = parseRunID(r.ID); err != nil {
			return "", fmt.Errorf("store run of job %s: %w", r.Job, err)
		}
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		var job string
		switch err := statedb.Get(txn, runIDKey(id), &job); {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		case job != r.Job:
			return fmt.Errorf("run %s belongs to job %s", r.ID, job)
		}
		if err := statedb.Set(txn, runKey(r.Job, id), r); err != nil {
			return err
		}
		if err := statedb.Set(txn, runIDKey(id), r.Job); err != nil {
			return err
		}
		running := runningPrefix + hexID(id)
		if r.Result == ResultRunning {
			if err := statedb.Set(txn, running, r.Job); err != nil {
				return err
			}
		} else if err := txn.Delete([]byte(running)); err != nil {
			return err
		}
		if id >= s.nextID {
			return statedb.Set(txn, nextRunKey, id+1)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("store run %s of job %s: %w", r.ID, r.Job, err)
	}
	s.nextID = max(s.nextID, id+1)
	return r.ID, nil
}

// Runs returns up to limit runs of job, newest first; a limit of 0 or less
// returns them all.
func (s *State) Runs(job string, limit int) ([]Run, error) {
	var runs []Run
	err := s.db.View(func(txn *badger.Txn) error {
		return statedb.Scan(txn, runPrefix+job+"/", true, func(key string, v []byte) (bool, error) {
			var r Run
			if err := json.Unmarshal(v, &r); err != nil {
				return false, fmt.Errorf("%s: %w", key, err)
			}
			runs = append(runs, r)
			return limit <= 0 || len(runs) < limit, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load runs of job %s: %w", job, err)
	}
	return runs, nil
}

// Run returns the run with the given ID.
func (s *State) Run(id string) (Run, error) {
	n, err := parseRunID(id)
	if err != nil {
		return Run{}, fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	var r Run
	err = s.db.View(func(txn *badger.Txn) error {
		var job string
		if err := statedb.Get(txn, runIDKey(n), &job); err != nil {
			return err
		}
		return statedb.Get(txn, runKey(job, n), &r)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Run{}, fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("load run %s: %w", id, err)
	}
	return r, nil
}

// recoverInterrupted marks failed the runs that are recorded as running,
// with their unfinished VMs.
func (s *State) recoverInterrupted() error {
	type entry struct {
		id  uint64
		job string
	}
	var found []entry
	err := s.db.View(func(txn *badger.Txn) error {
		return statedb.Scan(txn, runningPrefix, false, func(key string, v []byte) (bool, error) {
			id, err := strconv.ParseUint(strings.TrimPrefix(key, runningPrefix), 16, 64)
			if err != nil {
				return false, fmt.Errorf("bad key %s", key)
			}
			var job string
			if err := json.Unmarshal(v, &job); err != nil {
				return false, fmt.Errorf("%s: %w", key, err)
			}
			found = append(found, entry{id, job})
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("find interrupted runs: %w", err)
	}
	for _, e := range found {
		var r Run
		err := s.db.View(func(txn *badger.Txn) error { return statedb.Get(txn, runKey(e.job, e.id), &r) })
		if err != nil {
			return fmt.Errorf("load interrupted run %d of job %s: %w", e.id, e.job, err)
		}
		r.Result, r.Error = ResultFailed, interruptedError
		for i := range r.VMs {
			if r.VMs[i].Result == ResultPending {
				r.VMs[i].Result, r.VMs[i].Error = ResultFailed, interruptedError
			}
		}
		if _, err := s.AddRun(r); err != nil {
			return err
		}
		s.log.Warn("marked an interrupted run failed", "job", r.Job, "run", r.ID, "started", r.Started)
	}
	return nil
}

func hexID(id uint64) string { return fmt.Sprintf("%016x", id) }

func runKey(job string, id uint64) string { return runPrefix + job + "/" + hexID(id) }
func runIDKey(id uint64) string           { return runIDPrefix + hexID(id) }

// parseRunID parses a run ID as AddRun makes them: a positive decimal
// number without leading zeros.
func parseRunID(id string) (uint64, error) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != id {
		return 0, fmt.Errorf("invalid run ID %q", id)
	}
	return n, nil
}
