package appliance_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/vsphere/lab"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// BenchmarkJob20VMs runs a job over the lab's 20 VMs (two 256 MiB disks
// each, on 3 datastores): a first full run, then, per iteration, an
// incremental run after guest writes to every disk. It reports the
// throughput of both and how many bytes the incrementals read for each
// byte the guests changed.
//
//	go test -run '^$' -bench Job20VMs -benchtime 3x ./appliance/
func BenchmarkJob20VMs(b *testing.B) {
	ctx := context.Background()
	const vms, disks, diskSize = 20, 2, 256 << 20
	r := newRig(b, lab.Options{VMs: vms, Datastores: 3, Disks: disks, DiskSize: diskSize, FileBytes: 32 << 20}, 8, 2)
	job := jobs.Job{Name: "bench", Selection: jobs.Selection{Folders: []string{"/DC0/vm"}}, Schedule: "@daily", Enabled: true}
	run := func() (read, newBytes int64, d time.Duration) {
		start := time.Now()
		res, err := r.runner.RunJob(ctx, job, "manual", time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if res.Result != jobs.ResultSuccess {
			b.Fatalf("run %s: %s", res.Result, res.Error)
		}
		for _, v := range res.VMs {
			read += v.BytesRead
			newBytes += v.BytesNew
		}
		return read, newBytes, time.Since(start)
	}
	fullRead, fullNew, fullTime := run()
	b.ReportMetric(float64(fullRead)/fullTime.Seconds()/1e6, "full-MB/s")
	b.ReportMetric(fullTime.Seconds(), "full-s")
	b.Logf("full run: read %d MiB (new %d MiB) of %d GiB of disks in %.1fs", fullRead>>20, fullNew>>20, vms*disks*diskSize>>30, fullTime.Seconds())

	rng := rand.New(rand.NewPCG(1, 1))
	var changed, read int64
	var took time.Duration
	buf := make([]byte, 256<<10)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// About 1% of every disk, in writes of 4 KiB to 256 KiB.
		for _, vm := range r.lab.VMs() {
			for d := range disks {
				for n := int64(0); n < diskSize/100; {
					size := 4<<10 + rng.IntN(252<<10)
					for j := range buf[:size] {
						buf[j] = byte(rng.Uint32())
					}
					if err := r.lab.Write(vm.Name, d, rng.Int64N(diskSize-int64(size)), buf[:size]); err != nil {
						b.Fatal(err)
					}
					n += int64(size)
					changed += int64(size)
				}
			}
		}
		b.StartTimer()
		rd, _, d := run()
		read += rd
		took += d
	}
	b.ReportMetric(float64(read)/float64(changed), "read/changed")
	b.ReportMetric(float64(changed)/took.Seconds()/1e6, "changed-MB/s")
	b.ReportMetric(took.Seconds()/float64(b.N), "incr-s")
	b.Logf("incrementals: %d runs, changed %d MiB, read %d MiB (%.2f×), %.1fs a run", b.N, changed>>20, read>>20,
		float64(read)/float64(changed), took.Seconds()/float64(b.N))
}
