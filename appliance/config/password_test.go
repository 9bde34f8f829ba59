package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content, want string
	}{
		{"secret\n", "secret"},
		{"secret\r\n", "secret"},
		{"secret", "secret"},
		{"secret\n\n", "secret\n"},
		{" secret \n", " secret "},
		{"secret\r", "secret\r"},
	} {
		path := filepath.Join(dir, "pass")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Store{PasswordFile: path}.Password()
		if err != nil || string(got) != tc.want {
			t.Errorf("password file %q: got %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}

	for _, content := range []string{"", "\n", "\r\n"} {
		path := filepath.Join(dir, "empty")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := VCenter{Name: "vc1", PasswordFile: path}.Password()
		if err == nil || err.Error() != "vCenter vc1 password: "+path+" is empty" {
			t.Errorf("password file %q: error = %v, want one saying it is empty", content, err)
		}
	}

	missing := filepath.Join(dir, "missing")
	_, err := Store{PasswordFile: missing}.Password()
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) || !strings.HasPrefix(err.Error(), "store password: ") {
		t.Errorf("missing password file: error = %v", err)
	}
}

func TestPasswordEnv(t *testing.T) {
	t.Setenv("BULWARK_TEST_SET", "s3cret value")
	t.Setenv("BULWARK_TEST_EMPTY", "")
	got, err := VCenter{Name: "vc1", PasswordEnv: "BULWARK_TEST_SET"}.Password()
	if err != nil || string(got) != "s3cret value" {
		t.Errorf("set variable: got %q, %v", got, err)
	}

	_, err = Store{PasswordEnv: "BULWARK_TEST_UNSET_VARIABLE"}.Password()
	if err == nil || err.Error() != "store password: environment variable BULWARK_TEST_UNSET_VARIABLE is not set" {
		t.Errorf("unset variable: error = %v", err)
	}
	_, err = Store{PasswordEnv: "BULWARK_TEST_EMPTY"}.Password()
	if err == nil || err.Error() != "store password: environment variable BULWARK_TEST_EMPTY is empty" {
		t.Errorf("empty variable: error = %v", err)
	}
	_, err = Store{}.Password()
	if err == nil || !strings.Contains(err.Error(), "neither password_file nor password_env") {
		t.Errorf("no source: error = %v", err)
	}
}

func TestSMTPPassword(t *testing.T) {
	// Without a user name the relay is not logged in to.
	p, err := SMTP{PasswordEnv: "BULWARK_TEST_UNSET_VARIABLE"}.Password()
	if p != nil || err != nil {
		t.Errorf("no user name: got %q, %v; want nothing", p, err)
	}
	_, err = SMTP{Username: "u", PasswordEnv: "BULWARK_TEST_UNSET_VARIABLE"}.Password()
	if err == nil || err.Error() != "smtp password: environment variable BULWARK_TEST_UNSET_VARIABLE is not set" {
		t.Errorf("unset variable: error = %v", err)
	}
	t.Setenv("BULWARK_TEST_SMTP", "pw")
	p, err = SMTP{Username: "u", PasswordEnv: "BULWARK_TEST_SMTP"}.Password()
	if err != nil || string(p) != "pw" {
		t.Errorf("got %q, %v", p, err)
	}
}
