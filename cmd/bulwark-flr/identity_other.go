//go:build !linux && !windows

package main

import (
	"context"
	"errors"
)

// systemUUID is unknown here: the VM is named with --vm-uuid.
func systemUUID(context.Context) (string, error) {
	return "", errors.New("cannot read the VM's UUID on this system: give --vm-uuid")
}
