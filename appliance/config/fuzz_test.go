package config

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func FuzzParse(f *testing.F) {
	if sample, err := os.ReadFile("../../deploy/bulwark.yaml"); err == nil {
		f.Add(sample)
	}
	for _, doc := range []string{
		minimal,
		minimal + vcenter,
		minimal + smtp,
		minimal + "---\n" + minimal,
		minimal + "session_ttl: 90m\nlisten: '[::1]:8443'\n",
		"store: &s\n  path: /s\n  password_env: P\nx: *s\n",
		"a: &a [*a]\n",
		"store: {path: /s, password_env: P, <<: {create: false}}\n",
		"\xef\xbb\xbfstore:\n  path: /s\n",
		strings.Repeat("[", 100),
		"0: [:!00 \xef",
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "/etc/bulwark")
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config and the error %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		// What Parse accepts, written back out, reads the same.
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		c2, err := Parse(out, "/etc/bulwark")
		if err != nil {
			t.Fatalf("parse of marshalled config:\n%s\n%v", out, err)
		}
		out2, err := yaml.Marshal(c2)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the config:\n%s\nbecame\n%s", out, out2)
		}
	})
}
