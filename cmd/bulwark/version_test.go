package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"runtime"
	"testing"
)

func executeVersion(t *testing.T, args ...string) string {
	t.Helper()
	a := &app{}
	cmd := a.versionCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("version %q: %v", args, err)
	}
	return out.String()
}

func TestVersion(t *testing.T) {
	got := executeVersion(t)
	want := regexp.MustCompile(`^bulwark dev \(commit (unknown|[0-9a-f]{40})(, modified)?, ` +
		regexp.QuoteMeta(runtime.Version()+", "+runtime.GOOS+"/"+runtime.GOARCH) + `\)\n$`)
	if !want.MatchString(got) {
		t.Errorf("version printed %q, want it to match %s", got, want)
	}
}

func TestVersionJSON(t *testing.T) {
	var b buildInfo
	if err := json.Unmarshal([]byte(executeVersion(t, "--json")), &b); err != nil {
		t.Fatal(err)
	}
	if b.Version != "dev" || b.Commit == "" || b.Go != runtime.Version() || b.OS != runtime.GOOS || b.Arch != runtime.GOARCH {
		t.Errorf("version --json = %+v", b)
	}
}

func TestVersionString(t *testing.T) {
	b := buildInfo{Version: "1.2.3", Commit: "35df0b9", Go: "go1.26.0", OS: "linux", Arch: "arm64"}
	if got, want := b.String(), "bulwark 1.2.3 (commit 35df0b9, go1.26.0, linux/arm64)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	b.Modified = true
	if got, want := b.String(), "bulwark 1.2.3 (commit 35df0b9, modified, go1.26.0, linux/arm64)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestVersionArgs(t *testing.T) {
	cmd := (&app{}).versionCommand()
	cmd.SetOut(new(bytes.Buffer))
	cmd.SetErr(new(bytes.Buffer))
	cmd.SetArgs([]string{"extra"})
	if err := cmd.Execute(); err == nil {
		t.Error("version with an argument succeeded")
	}
}
