package lab

import (
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// faults are the failures a test has asked for, counted down as they fire.
type faults struct {
	mu       sync.Mutex
	snapshot map[string]int // VM name -> snapshot creations left to fail
	quiesce  map[string]int // VM name -> quiesced snapshots left to fail
	drop     map[string]int // method name ("*" any) -> calls left that drop the sessions
	sessions map[string]bool
}

func (f *faults) add(m *map[string]int, key string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[key] += n
}

// take uses up one of the failures asked for key, if any is left.
func (f *faults) take(m *map[string]int, key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if (*m)[key] > 0 {
		(*m)[key]--
		return true
	}
	return false
}

func (f *faults) takeDrop(method string) bool {
	return f.take(&f.drop, method) || f.take(&f.drop, "*")
}

// FailSnapshots makes the next n snapshot creations of a VM fail, as they do
// when VMFS metadata is locked.
func (l *Lab) FailSnapshots(vmName string, n int) { l.faults.add(&l.faults.snapshot, vmName, n) }

// FailQuiesce makes the next n quiesced snapshots of a VM fail in the guest;
// snapshots without quiescing still work.
func (l *Lab) FailQuiesce(vmName string, n int) { l.faults.add(&l.faults.quiesce, vmName, n) }

// DropSessionsOn makes the next n calls of a SOAP method ("*" for any) end
// every session first, as a vCenter restart or a network cut does; the call
// fails with NotAuthenticated.
func (l *Lab) DropSessionsOn(method string, n int) { l.faults.add(&l.faults.drop, method, n) }

func (l *Lab) sawSession(key string) {
	l.faults.mu.Lock()
	defer l.faults.mu.Unlock()
	if l.faults.sessions == nil {
		l.faults.sessions = map[string]bool{}
	}
	l.faults.sessions[key] = true
}

// dropSessions terminates every session the lab has seen.
func (l *Lab) dropSessions(ctx *simulator.Context) {
	l.faults.mu.Lock()
	keys := l.faults.sessions
	l.faults.sessions = nil
	l.faults.mu.Unlock()
	// TerminateSession refuses to end the caller's own session; the lab is
	// no session of its own.
	as := &simulator.Context{Map: ctx.Map, Session: &simulator.Session{UserSession: types.UserSession{Key: "lab"}}}
	sm := ctx.Map.SessionManager()
	for key := range keys {
		sm.TerminateSession(as, &types.TerminateSession{SessionId: []string{key}})
	}
	l.log.Info("sessions dropped", "sessions", len(keys))
}
