// Package jobs holds backup jobs: what they select, when they run and how
// long their points are kept, the state database that remembers them and
// their history, the runner that backs up the selected VMs within the
// appliance's limits, and the scheduler that starts runs on time.
//
// The package knows nothing of vSphere. It asks for what it needs through
// small interfaces, [Inventory], [Backuper] and [Retainer], which the vSphere
// adapter and the appliance implement, and takes time from a [Clock] so that
// tests can drive schedules and backup windows without waiting.
package jobs
