package lvm

import (
	"fmt"
	"strconv"
)

// The metadata text is LVM's configuration syntax:
//
//	name {                # a section
//		key = "string"
//		key = 42
//		key = ["a", 1]    # an array of strings and numbers
//	}

// Limits on the metadata text, whatever the metadata area says.
const (
	// MaxMetadata is the largest metadata text read. LVM's default
	// metadata area is 1 MiB and holds several copies of the text.
	MaxMetadata = 16 << 20
	// maxDepth bounds section nesting: a VG's text nests four deep
	// (vg, logical_volumes, lv, segment).
	maxDepth = 16
)

// section is a parsed `name { ... }`. Keys are unique within it.
type section struct {
	name     string
	values   map[string]any // string, int64, float64 or []any of those
	sections []*section     // in the order of the text
	byName   map[string]*section
}

func (s *section) sub(name string) *section { return s.byName[name] }

func (s *section) str(key string) (string, bool) {
	v, ok := s.values[key].(string)
	return v, ok
}

func (s *section) int(key string) (int64, bool) {
	v, ok := s.values[key].(int64)
	return v, ok
}

func (s *section) list(key string) ([]any, bool) {
	v, ok := s.values[key].([]any)
	return v, ok
}

// strings returns an array of strings, such as a status.
func (s *section) strings(key string) []string {
	l, _ := s.list(key)
	var out []string
	for _, v := range l {
		if v, ok := v.(string); ok {
			out = append(out, v)
		}
	}
	return out
}

// parseConfig parses metadata text into its top-level section (named "").
func parseConfig(text []byte) (*section, error) {
	if len(text) > MaxMetadata {
		return nil, corrupt("metadata text of %d bytes", len(text))
	}
	p := &parser{text: text}
	root := newSection("")
	if err := p.body(root, 0); err != nil {
		return nil, err
	}
	return root, nil
}

func newSection(name string) *section {
	return &section{name: name, values: map[string]any{}, byName: map[string]*section{}}
}

type parser struct {
	text []byte
	pos  int
}

func (p *parser) errorf(format string, args ...any) error {
	line := 1
	for _, c := range p.text[:p.pos] {
		if c == '\n' {
			line++
		}
	}
	return corrupt("metadata text line %d: %s", line, fmt.Sprintf(format, args...))
}

// skip passes white space and comments.
func (p *parser) skip() {
	for p.pos < len(p.text) {
		switch c := p.text[p.pos]; {
		case c == '#':
			for p.pos < len(p.text) && p.text[p.pos] != '\n' {
				p.pos++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0:
			p.pos++
		default:
			return
		}
	}
}

func isNameByte(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', 0, '#', '{', '}', '[', ']', '=', ',', '"':
		return false
	}
	return true
}

// body parses the items of a section up to its closing brace, or up to the
// end of the text for the top level.
func (p *parser) body(s *section, depth int) error {
	for {
		p.skip()
		if p.pos == len(p.text) {
			if depth > 0 {
				return p.errorf("section %q not closed", s.name)
			}
			return nil
		}
		if p.text[p.pos] == '}' {
			if depth == 0 {
				return p.errorf("unexpected '}'")
			}
			p.pos++
			return nil
		}
		start := p.pos
		for p.pos < len(p.text) && isNameByte(p.text[p.pos]) {
			p.pos++
		}
		name := string(p.text[start:p.pos])
		if name == "" {
			return p.errorf("unexpected %q", p.text[p.pos])
		}
		p.skip()
		if p.pos == len(p.text) {
			return p.errorf("%q: unexpected end", name)
		}
		if _, dup := s.values[name]; dup || s.byName[name] != nil {
			return p.errorf("%q appears twice in section %q", name, s.name)
		}
		switch p.text[p.pos] {
		case '{':
			if depth+1 > maxDepth {
				return p.errorf("sections nested more than %d deep", maxDepth)
			}
			p.pos++
			sub := newSection(name)
			if err := p.body(sub, depth+1); err != nil {
				return err
			}
			s.sections = append(s.sections, sub)
			s.byName[name] = sub
		case '=':
			p.pos++
			p.skip()
			v, err := p.value(true)
			if err != nil {
				return err
			}
			s.values[name] = v
		default:
			return p.errorf("%q followed by %q", name, p.text[p.pos])
		}
	}
}

// value parses a string, a number or, when arrays is set, an array of
// those.
func (p *parser) value(arrays bool) (any, error) {
	if p.pos == len(p.text) {
		return nil, p.errorf("value missing")
	}
	switch c := p.text[p.pos]; {
	case c == '"':
		return p.str()
	case c == '[' && arrays:
		p.pos++
		list := []any{}
		for {
			p.skip()
			if p.pos < len(p.text) && p.text[p.pos] == ']' {
				p.pos++
				return list, nil
			}
			if len(list) > 0 {
				if p.pos == len(p.text) || p.text[p.pos] != ',' {
					return nil, p.errorf("array without ',' or ']'")
				}
				p.pos++
				p.skip()
			}
			v, err := p.value(false)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return nil, p.errorf("unexpected %q in a value", p.text[p.pos])
}

func (p *parser) str() (string, error) {
	p.pos++ // opening quote
	var b []byte
	for p.pos < len(p.text) {
		c := p.text[p.pos]
		p.pos++
		switch c {
		case '"':
			return string(b), nil
		case '\\':
			if p.pos == len(p.text) {
				return "", p.errorf("string not closed")
			}
			c = p.text[p.pos]
			p.pos++
		}
		b = append(b, c)
	}
	return "", p.errorf("string not closed")
}

func (p *parser) number() (any, error) {
	start := p.pos
	if p.text[p.pos] == '-' {
		p.pos++
	}
	float := false
	for p.pos < len(p.text) {
		c := p.text[p.pos]
		if c == '.' && !float {
			float = true
		} else if c < '0' || c > '9' {
			break
		}
		p.pos++
	}
	s := string(p.text[start:p.pos])
	if float {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, p.errorf("number %q", s)
		}
		return f, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil, p.errorf("number %q", s)
	}
	return n, nil
}
