package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// measurement is what one timed process run cost.
type measurement struct {
	Wall   time.Duration
	MaxRSS int64 // peak resident set size in bytes, including waited-for children
}

// command describes one external process.
type command struct {
	Path   string
	Args   []string
	Env    []string // added to the inherited environment
	Dir    string
	Stdin  string // file to read stdin from; empty means /dev/null
	Stdout string // file to write stdout to; empty means capture it
}

// String returns the command line for logs and error messages.
func (c command) String() string {
	s := filepath.Base(c.Path) + " " + strings.Join(c.Args, " ")
	if c.Stdin != "" {
		s += " < " + c.Stdin
	}
	if c.Stdout != "" {
		s += " > " + c.Stdout
	}
	return s
}

// maxCapture bounds how much of stdout and stderr run keeps in memory.
const maxCapture = 8 << 20

// run starts c, waits for it and returns its wall-clock time, peak RSS and
// captured stdout. A non-zero exit status is an error that quotes the end of
// stderr.
func (c command) run(ctx context.Context) (measurement, []byte, error) {
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	stdout := &tailBuffer{max: maxCapture}
	stderr := &tailBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if c.Stdin != "" {
		f, err := os.Open(c.Stdin)
		if err != nil {
			return measurement{}, nil, fmt.Errorf("%s: %w", c, err)
		}
		defer f.Close()
		cmd.Stdin = f
	}
	if c.Stdout != "" {
		f, err := os.Create(c.Stdout)
		if err != nil {
			return measurement{}, nil, fmt.Errorf("%s: %w", c, err)
		}
		defer f.Close()
		cmd.Stdout = f
	}
	start := time.Now()
	err := cmd.Run()
	m := measurement{Wall: time.Since(start)}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.MaxRSS = ru.Maxrss * 1024 // Linux reports KiB
		}
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = lastLines(stdout.String(), 5)
		}
		return m, stdout.Bytes(), fmt.Errorf("%s: %w: %s", c, err, msg)
	}
	return m, stdout.Bytes(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	bytes.Buffer
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > b.max {
		p = p[len(p)-b.max:]
	}
	if over := b.Len() + len(p) - b.max; over > 0 {
		b.Next(over)
	}
	b.Buffer.Write(p)
	return n, nil
}

// lastLines returns at most n trailing lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// findTool looks name up on PATH and then in dirs.
func findTool(name string, dirs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in %s", name, strings.Join(dirs, ", "))
}

// findSbinTool finds a system administration tool such as mke2fs, which is
// often outside a normal user's PATH.
func findSbinTool(name string) (string, error) {
	return findTool(name, "/usr/sbin", "/sbin", "/usr/local/sbin")
}

// goBinDirs returns the directories "go install" writes to.
func goBinDirs(ctx context.Context) []string {
	var dirs []string
	if out, err := exec.CommandContext(ctx, "go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) == 2 {
			if lines[0] != "" {
				dirs = append(dirs, lines[0])
			}
			for _, p := range filepath.SplitList(lines[1]) {
				dirs = append(dirs, filepath.Join(p, "bin"))
			}
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	return dirs
}

// buildBulwark builds ./cmd/bulwark of the enclosing module into dir and
// describes what it built from.
func buildBulwark(ctx context.Context, dir string) (bin, origin string, err error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("build bulwark: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", "", errors.New("build bulwark: not inside the bulwark module; run from the repository root or pass --bulwark")
	}
	root := filepath.Dir(gomod)
	bin = filepath.Join(dir, "bulwark")
	c := command{Path: "go", Args: []string{"build", "-buildvcs=false", "-o", bin, "./cmd/bulwark"}, Dir: root}
	if _, _, err := c.run(ctx); err != nil {
		return "", "", fmt.Errorf("build bulwark: %w", err)
	}
	return bin, describeCheckout(ctx, root), nil
}

// describeCheckout names the commit checked out in the Git work tree root
// and whether the tree has uncommitted changes.
func describeCheckout(ctx context.Context, root string) string {
	head, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "built from a work tree without Git history"
	}
	desc := "built from commit " + strings.TrimSpace(string(head))
	status, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(bytes.TrimSpace(status)) > 0 {
		desc += " with uncommitted changes"
	}
	return desc + " at " + time.Now().UTC().Format(time.RFC3339)
}

// firstLine returns the first output line of a version command, or a note
// that the version is unknown.
func firstLine(ctx context.Context, path string, args ...string) string {
	out, err := exec.CommandContext(ctx, path, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if line == "" {
		return "unknown"
	}
	return line
}
