package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// systemUUID returns the SMBIOS system UUID of the machine, as
// Win32_ComputerSystemProduct shows it: through PowerShell, or wmic on
// systems that still have it.
func systemUUID(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "powershell", "-NoProfile", "-NonInteractive", "-Command",
		"(Get-CimInstance -ClassName Win32_ComputerSystemProduct).UUID").Output()
	if err == nil {
		if u := strings.TrimSpace(string(out)); u != "" {
			return u, nil
		}
	}
	out, werr := exec.CommandContext(ctx, "wmic", "csproduct", "get", "uuid").Output()
	if werr == nil {
		// "UUID" then the value, one a line.
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.TrimSpace(line); f != "" && !strings.EqualFold(f, "UUID") {
				return f, nil
			}
		}
		werr = errors.New("wmic printed no UUID")
	}
	return "", fmt.Errorf("read the VM's UUID: %w (give --vm-uuid)", errors.Join(err, werr))
}
