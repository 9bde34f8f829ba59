package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwarkbackup/bulwark/appliance/certs"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// appProcess is the bulwark command running as a child process.
type appProcess struct {
	cmd   *exec.Cmd
	lines chan string // stdout and stderr, line by line
	seen  []string    // the lines taken from lines
	done  chan error
}

func startProcess(t *testing.T, env []string, args ...string) *appProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &appProcess{cmd: cmd, lines: make(chan string, 1000), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			t.Log(sc.Text())
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		p.done <- err
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitLine waits for a line that re matches, among those printed so far
// and later, and returns its submatches.
func (p *appProcess) waitLine(t *testing.T, re *regexp.Regexp, within time.Duration) []string {
	t.Helper()
	for _, l := range p.seen {
		if m := re.FindStringSubmatch(l); m != nil {
			return m
		}
	}
	deadline := time.After(within)
	for {
		select {
		case l := <-p.lines:
			p.seen = append(p.seen, l)
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case err := <-p.done:
			t.Fatalf("the process ended (%v) before printing a line matching %s", err, re)
		case <-deadline:
			t.Fatalf("no line matching %s within %v", re, within)
		}
	}
}

// stop sends SIGTERM and requires a clean exit.
func (p *appProcess) stop(t *testing.T, within time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("after SIGTERM the process exited with %v", err)
		}
	case <-time.After(within):
		t.Fatalf("the process did not exit within %v of SIGTERM", within)
	}
}

var insecureClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// TestDemo runs "bulwark demo" as a user would: it must back up the lab's
// VMs twice, print where and how to log in, answer there, and stop cleanly
// on SIGTERM. Its directory, kept with --dir, then holds the history.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	p := startProcess(t, []string{"BULWARK_ADMIN_PASSWORD="}, "demo", "--dir", dir, "--listen", "127.0.0.1:0", "--vms", "2")
	url := p.waitLine(t, regexp.MustCompile(`URL:\s+(https://\S+?)/\s`), 3*time.Minute)[1]
	password := p.waitLine(t, regexp.MustCompile(`password:\s+(\S+)`), 10*time.Second)[1]

	resp, err := insecureClient.Post(url+"/api/v1/sessions", "application/json",
		strings.NewReader(fmt.Sprintf(`{"username":"admin","password":%q}`, password)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("login with the printed password: %s", resp.Status)
	}
	p.stop(t, time.Minute)

	st, err := jobs.OpenState(filepath.Join(dir, "state", "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs, err := st.Runs(demoJob, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 {
		t.Fatalf("the demo's job has %d runs, want 2", len(runs))
	}
	full, incr := runs[1], runs[0]
	for _, r := range []jobs.Run{full, incr} {
		if r.Result != jobs.ResultSuccess || len(r.VMs) != 2 {
			t.Fatalf("run %s: %s with %d VMs, want success with 2", r.ID, r.Result, len(r.VMs))
		}
	}
	for i, v := range incr.VMs {
		// The guests wrote 4 MiB each; the full read what the disks hold.
		if v.BytesRead > 5<<20 || v.BytesRead >= full.VMs[i].BytesRead {
			t.Errorf("%s: the incremental read %d bytes (the full %d), want about the 4 MiB written", v.Name, v.BytesRead, full.VMs[i].BytesRead)
		}
	}
}

// TestServe runs "bulwark serve" on a configuration file: the first start
// prints the certificate's fingerprint and a generated admin password, the
// service answers, SIGTERM stops it cleanly, and a restart keeps the
// admin (and prints no new password).
func TestServe(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "store.pass"), []byte("serve test password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "bulwark.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nstore:\n  path: store\n  password_file: store.pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"BULWARK_ADMIN_PASSWORD="}
	p := startProcess(t, env, "serve", "--config", cfg)
	fp := p.waitLine(t, regexp.MustCompile(`fingerprint: ([0-9A-F:]{95})$`), time.Minute)[1]
	password := p.waitLine(t, regexp.MustCompile(`created user admin with password (\S+)`), time.Minute)[1]
	url := p.waitLine(t, regexp.MustCompile(`serving on (https://\S+)`), time.Minute)[1]

	resp, err := insecureClient.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if h.Status != "ok" {
		t.Fatalf("/healthz: %s %q", resp.Status, h.Status)
	}
	if got := certFingerprint(t, url); got != fp {
		t.Fatalf("the served certificate's fingerprint is %s, the printed one %s", got, fp)
	}
	p.stop(t, time.Minute)

	p = startProcess(t, env, "serve", "--config", cfg)
	url = p.waitLine(t, regexp.MustCompile(`serving on (https://\S+)`), time.Minute)[1]
	resp, err = insecureClient.Post(url+"/api/v1/sessions", "application/json",
		strings.NewReader(fmt.Sprintf(`{"username":"admin","password":%q}`, password)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("after a restart, login with the first start's password: %s", resp.Status)
	}
	if got := certFingerprint(t, url); got != fp {
		t.Fatalf("after a restart the certificate changed: %s, was %s", got, fp)
	}
	p.stop(t, time.Minute)
}

func certFingerprint(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
	resp, err := insecureClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	der := resp.TLS.PeerCertificates[0].Raw
	return certs.Fingerprint(der)
}
