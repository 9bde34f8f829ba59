package main

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// productUUID is where Linux shows the SMBIOS system UUID; only root may
// read it.
const productUUID = "/sys/class/dmi/id/product_uuid"

// systemUUID returns the SMBIOS system UUID of the machine.
func systemUUID(context.Context) (string, error) {
	b, err := os.ReadFile(productUUID)
	if err != nil {
		if os.IsPermission(err) {
			return "", fmt.Errorf("read the VM's UUID: %w (run as root, or give --vm-uuid)", err)
		}
		return "", fmt.Errorf("read the VM's UUID: %w (give --vm-uuid)", err)
	}
	return strings.TrimSpace(string(b)), nil
}
