// Package blob names the units the store keeps: blobs, identified by a keyed
// hash of their plaintext, and typed by what they hold.
package blob

import (
	"encoding/hex"
	"fmt"
)

// ID identifies a blob, a pack or a point: 32 bytes, shown as hex.
type ID [32]byte

// String returns the ID in lower-case hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first eight hex digits, enough for people and logs.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is the zero ID, which names nothing.
func (id ID) IsZero() bool { return id == ID{} }

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseID parses a full 64-digit hex ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("invalid ID %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("invalid ID %q: %w", s, err)
	}
	return id, nil
}

// Type says what a blob holds.
type Type uint8

const (
	// Data is a chunk of disk content.
	Data Type = 1
	// Map is a page of a disk map.
	Map Type = 2
)

func (t Type) String() string {
	switch t {
	case Data:
		return "data"
	case Map:
		return "map"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Valid reports whether t is a known type.
func (t Type) Valid() bool { return t == Data || t == Map }
