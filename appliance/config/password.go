package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// Password reads the store password from its file or environment
// variable.
func (s Store) Password() ([]byte, error) {
	p, err := readSecret(s.PasswordFile, s.PasswordEnv)
	if err != nil {
		return nil, fmt.Errorf("store password: %w", err)
	}
	return p, nil
}

// Password reads the password of the vCenter from its file or environment
// variable.
func (vc VCenter) Password() ([]byte, error) {
	p, err := readSecret(vc.PasswordFile, vc.PasswordEnv)
	if err != nil {
		return nil, fmt.Errorf("vCenter %s password: %w", vc.Name, err)
	}
	return p, nil
}

// Password reads the password of the mail relay from its file or
// environment variable. It returns nil and no error when there is no
// user name, since then the mailer does not log in.
func (s SMTP) Password() ([]byte, error) {
	if s.Username == "" {
		return nil, nil
	}
	p, err := readSecret(s.PasswordFile, s.PasswordEnv)
	if err != nil {
		return nil, fmt.Errorf("smtp password: %w", err)
	}
	return p, nil
}

// readSecret reads a password from file or, if file is "", from the
// environment variable env. Errors name where the password was looked for
// and never contain it.
func readSecret(file, env string) ([]byte, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		// Editors and `echo` end the file with a newline that is not part
		// of the password; a second one, or spaces, would be.
		if bytes.HasSuffix(b, []byte("\r\n")) {
			b = b[:len(b)-2]
		} else {
			b = bytes.TrimSuffix(b, []byte("\n"))
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("%s is empty", file)
		}
		return b, nil
	case env != "":
		v, ok := os.LookupEnv(env)
		switch {
		case !ok:
			return nil, fmt.Errorf("environment variable %s is not set", env)
		case v == "":
			return nil, fmt.Errorf("environment variable %s is empty", env)
		}
		return []byte(v), nil
	default:
		return nil, errors.New("neither password_file nor password_env is set")
	}
}
