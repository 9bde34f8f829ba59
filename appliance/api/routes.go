package api

import (
	"net/http"

	"github.com/bulwarkbackup/bulwark/appliance/auth"
	"github.com/bulwarkbackup/bulwark/appliance/tasks"
	"github.com/bulwarkbackup/bulwark/appliance/vsphere"
	"github.com/bulwarkbackup/bulwark/chunkstore"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// table is every endpoint: the mux serves it and the OpenAPI document
// describes it, so neither can drift from the other.
func (s *Server) table() []route {
	const (
		get, post, put, patch, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete
		p                          = Prefix
	)
	limit := queryParam{"limit", "the most items to return", "integer"}
	fsPathParam := queryParam{"path", "a path relative to the volume's root, slash-separated; empty for the root", "string"}
	return []route{
		{method: get, path: "/healthz", tag: "service", summary: "Whether the appliance is up", access: public, out: Health{}, do: s.health},
		{method: get, path: "/metrics", tag: "service", summary: "Prometheus metrics", access: viewer, stream: "text/plain", do: s.metrics},
		{method: get, path: p + "/openapi.json", tag: "service", summary: "This document", access: anyone, stream: "application/json", do: s.openAPIDoc},

		{method: post, path: p + "/sessions", tag: "sessions", summary: "Log in: sets the session cookie and returns the CSRF token", access: public, status: http.StatusCreated, in: LoginRequest{}, out: SessionInfo{}, do: s.login},
		{method: get, path: p + "/session", tag: "sessions", summary: "Who is calling", access: anyone, out: SessionInfo{}, do: s.whoami},
		{method: del, path: p + "/session", tag: "sessions", summary: "Log out", access: anyone, status: http.StatusNoContent, do: s.logout},
		{method: put, path: p + "/session/password", tag: "sessions", summary: "Change one's own password", access: anyone, status: http.StatusNoContent, in: PasswordChange{}, do: s.changeOwnPassword},

		{method: get, path: p + "/users", tag: "users", summary: "List users", access: admin, out: []auth.User{}, do: s.listUsers},
		{method: post, path: p + "/users", tag: "users", summary: "Create a user", access: admin, status: http.StatusCreated, in: NewUser{}, out: auth.User{}, do: s.createUser},
		{method: get, path: p + "/users/{name}", tag: "users", summary: "Show a user", access: admin, out: auth.User{}, do: s.getUser},
		{method: patch, path: p + "/users/{name}", tag: "users", summary: "Change a user's role or password", access: admin, in: UserUpdate{}, out: auth.User{}, do: s.updateUser},
		{method: del, path: p + "/users/{name}", tag: "users", summary: "Delete a user, their sessions and tokens", access: admin, status: http.StatusNoContent, do: s.deleteUser},

		{method: get, path: p + "/tokens", tag: "tokens", summary: "List API tokens: all for admins, one's own for operators", access: operator, out: []auth.Token{}, do: s.listTokens},
		{method: post, path: p + "/tokens", tag: "tokens", summary: "Create an API token; its secret is shown only here", access: operator, status: http.StatusCreated, in: NewToken{}, out: CreatedToken{}, do: s.createToken},
		{method: del, path: p + "/tokens/{id}", tag: "tokens", summary: "Revoke an API token", access: operator, status: http.StatusNoContent, do: s.revokeToken},

		{method: get, path: p + "/vcenters", tag: "vcenters", summary: "List vCenters", access: viewer, out: []VCenterView{}, do: s.listVCenters},
		{method: post, path: p + "/vcenters", tag: "vcenters", summary: "Add a vCenter, after logging in to it", access: admin, status: http.StatusCreated, in: NewVCenter{}, out: VCenterView{}, do: s.addVCenter},
		{method: get, path: p + "/vcenters/{name}", tag: "vcenters", summary: "Show a vCenter", access: viewer, out: VCenterView{}, do: s.getVCenter},
		{method: del, path: p + "/vcenters/{name}", tag: "vcenters", summary: "Remove a vCenter that no job uses", access: admin, status: http.StatusNoContent, do: s.removeVCenter},
		{method: post, path: p + "/vcenters/{name}/test", tag: "vcenters", summary: "Log in to a vCenter and report its instance", access: admin, out: VCenterTest{}, do: s.testVCenter},
		{method: get, path: p + "/vcenters/{name}/inventory", tag: "inventory", summary: "The vCenter's folders, clusters, hosts, VMs, datastores and networks", access: viewer, out: vsphere.Inventory{}, do: s.inventory},

		{method: get, path: p + "/jobs", tag: "jobs", summary: "List jobs", access: viewer, out: []JobView{}, do: s.listJobs},
		{method: post, path: p + "/jobs", tag: "jobs", summary: "Create a job", access: admin, status: http.StatusCreated, in: jobs.Job{}, out: JobView{}, do: s.createJob},
		{method: get, path: p + "/jobs/{name}", tag: "jobs", summary: "Show a job", access: viewer, out: JobView{}, do: s.getJob},
		{method: put, path: p + "/jobs/{name}", tag: "jobs", summary: "Replace a job's definition", access: admin, in: jobs.Job{}, out: JobView{}, do: s.updateJob},
		{method: del, path: p + "/jobs/{name}", tag: "jobs", summary: "Delete a job; its history and points are kept", access: admin, status: http.StatusNoContent, do: s.deleteJob},
		{method: post, path: p + "/jobs/{name}/enable", tag: "jobs", summary: "Enable a job's schedule", access: admin, out: JobView{}, do: s.enableJob},
		{method: post, path: p + "/jobs/{name}/disable", tag: "jobs", summary: "Disable a job's schedule", access: admin, out: JobView{}, do: s.disableJob},
		{method: post, path: p + "/jobs/{name}/run", tag: "jobs", summary: "Run a job now", access: operator, status: http.StatusAccepted, out: RunStarted{}, do: s.runJob},
		{method: post, path: p + "/jobs/{name}/cancel", tag: "jobs", summary: "Cancel a job's run under way", access: operator, status: http.StatusAccepted, do: s.cancelJob},
		{method: get, path: p + "/jobs/{name}/runs", tag: "jobs", summary: "A job's history, newest first", access: viewer, query: []queryParam{limit}, out: []jobs.Run{}, do: s.jobRuns},
		{method: get, path: p + "/runs/{id}", tag: "jobs", summary: "Show a run", access: viewer, out: jobs.Run{}, do: s.getRun},

		{method: get, path: p + "/vms", tag: "points", summary: "The VMs that have points, also ones gone from vCenter", access: vmScoped, query: []queryParam{
			{"bios_uuid", "only the VM with this BIOS UUID (the guest's SMBIOS system UUID), in either byte order", "string"}}, out: []VMPoints{}, do: s.listVMs},
		{method: get, path: p + "/points", tag: "points", summary: "List points, newest first", access: vmScoped, query: []queryParam{
			{"vm", "only the points of this VM: its source, instance UUID or name", "string"},
			{"job", "only the points this job made", "string"}, limit}, out: []PointView{}, do: s.listPoints},
		{method: get, path: p + "/points/{id}", tag: "points", summary: "Show a point, with its VM configuration", access: vmScoped, out: PointView{}, do: s.getPoint},
		{method: post, path: p + "/points/{id}/pin", tag: "points", summary: "Pin a point: retention keeps it", access: operator, out: PointView{}, do: s.pinPoint},
		{method: del, path: p + "/points/{id}/pin", tag: "points", summary: "Unpin a point", access: operator, out: PointView{}, do: s.unpinPoint},
		{method: del, path: p + "/points/{id}", tag: "points", summary: "Delete a point; the next GC frees its data", access: admin, status: http.StatusNoContent, do: s.deletePoint},
		{method: post, path: p + "/points/{id}/restore", tag: "restores", summary: "Restore a point as a new VM, or over its original (admins; powered off; only what differs is written)", access: operator, status: http.StatusAccepted, in: VMRestoreRequest{}, out: tasks.Task{}, do: s.restoreVM},
		{method: post, path: p + "/points/{id}/restore-disk", tag: "restores", summary: "Restore one disk of a point to a VM or as a disk file on a datastore", access: operator, status: http.StatusAccepted, in: DiskRestoreRequest{}, out: tasks.Task{}, do: s.restoreDisk},
		{method: post, path: p + "/points/{id}/rehearse", tag: "restores", summary: "Restore a point as a VM with NICs disconnected, boot it, wait for its heartbeat, delete it", access: operator, status: http.StatusAccepted, in: RehearsalRequest{}, out: tasks.Task{}, do: s.rehearse},

		// File-level restore. {volume} is a volume's ref: its ID with '/'
		// written ':' ("vg0:root"), as VolumeRef spells it.
		{method: get, path: p + "/points/{id}/volumes", tag: "files", summary: "The point's volumes: disks, partitions and LVs, with their filesystems", access: vmScoped, out: []VolumeView{}, do: s.listVolumes},
		{method: get, path: p + "/points/{id}/volumes/{volume}/files", tag: "files", summary: "A file's metadata and, for a directory, a page of its entries; {volume} is a volume's ref", access: vmScoped, query: []queryParam{
			fsPathParam, {"follow", "true follows a symlink at the path itself", "string"},
			{"stat", "true shows the file only, not a directory's entries", "string"},
			{"after", "list the entries whose names sort after this one (the last of the previous page)", "string"},
			{"limit", "the most entries to return (1000 unless given, at most 10000)", "integer"}}, out: Listing{}, do: s.listFiles},
		{method: get, path: p + "/points/{id}/volumes/{volume}/content", tag: "files", summary: "Download a file; Range requests read parts of it", access: vmScoped, query: []queryParam{fsPathParam},
			stream: "application/octet-stream", do: s.fileContent},
		{method: get, path: p + "/points/{id}/volumes/{volume}/archive", tag: "files", summary: "Download files and folders as a tar or zip stream", access: vmScoped, query: []queryParam{
			{"path", "a file or folder to put in the archive, relative to the volume's root; repeat for more", "string"},
			{"format", "tar (the default) or zip", "string"}}, stream: "application/octet-stream", do: s.fileArchive},
		{method: get, path: p + "/points/{id}/volumes/{volume}/search", tag: "files", summary: "Find files by name: a glob (*, ?, [...]) or a substring, case aside", access: vmScoped, query: []queryParam{
			{"pattern", "what names must match", "string"}, {"path", "where to search, relative to the volume's root (the root unless given)", "string"},
			{"limit", "the most matches to return (1000 unless given, at most 10000)", "integer"}}, out: SearchResult{}, do: s.searchFiles},

		{method: get, path: p + "/store/stats", tag: "store", summary: "Store usage, dedup and compression", access: viewer, out: chunkstore.Stats{}, do: s.storeStats},
		{method: post, path: p + "/store/check", tag: "store", summary: "Check the store's integrity, as a task", access: operator, status: http.StatusAccepted, in: CheckRequest{}, out: tasks.Task{}, do: s.storeCheck},
		{method: post, path: p + "/store/gc", tag: "store", summary: "Collect garbage, as a task", access: operator, status: http.StatusAccepted, in: GCRequest{}, out: tasks.Task{}, do: s.storeGC},
		{method: post, path: p + "/store/prune", tag: "store", summary: "Apply a retention policy; dry_run only reports", access: operator, in: PruneRequest{}, out: []PruneDecision{}, do: s.storePrune},

		{method: get, path: p + "/tasks", tag: "tasks", summary: "List tasks, newest first", access: viewer, query: []queryParam{
			{"kind", "only tasks of this kind", "string"}, {"state", "only tasks in this state", "string"}, limit}, out: []tasks.Task{}, do: s.listTasks},
		{method: get, path: p + "/tasks/{id}", tag: "tasks", summary: "Show a task", access: viewer, out: tasks.Task{}, do: s.getTask},
		{method: post, path: p + "/tasks/{id}/cancel", tag: "tasks", summary: "Cancel a task", access: operator, status: http.StatusAccepted, do: s.cancelTask},
		{method: get, path: p + "/events", tag: "events", summary: "Live events (tasks, job runs, VM backups) as server-sent events", access: viewer, query: []queryParam{
			{"after", "replay the events after this ID (as the Last-Event-ID header does)", "integer"}}, stream: "text/event-stream", do: s.events},
		{method: get, path: p + "/audit", tag: "audit", summary: "The audit log, newest first", access: admin, query: []queryParam{
			{"before", "only entries older than this sequence number", "integer"}, limit}, out: []auth.AuditEntry{}, do: s.auditLog},
	}
}
