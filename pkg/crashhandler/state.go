package crashhandler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fastreboot/fastreboot/internal/atomicfile"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// DefaultStateDir holds the state file; it is on tmpfs, so a new kernel
// starts without one (every generation re-arms).
const DefaultStateDir = "/run/fastreboot"

const (
	stateFile    = "crash.json"
	stateVersion = 1
)

// State is what Arm records about the armed crash image, in
// StateDir/crash.json.
type State struct {
	Version int       `json:"version"`
	ArmedAt time.Time `json:"armed_at"`
	Mode    Mode      `json:"mode"`
	// Load is the system call that armed the image (LoadFile or
	// LoadSegments; empty in states written before it was recorded).
	Load LoadMethod `json:"load,omitempty"`
	// LoadFallback says why the image was armed with LoadFile when
	// LoadSegments was asked for (lockdown, or kexec_load refused).
	LoadFallback string `json:"load_fallback,omitempty"`
	// Cmdline is the crash command line given to the kernel (with
	// LoadFile the kernel prepends elfcorehdr=).
	Cmdline string `json:"cmdline"`
	// Name is the manifest's name, if any.
	Name string `json:"name,omitempty"`
	// Digest identifies the image: the manifest's module digests hashed
	// together, or Image.Digest.
	Digest      string `json:"digest"`
	KernelBytes int64  `json:"kernel_bytes"`
	InitrdBytes int64  `json:"initrd_bytes"`
	// ImageBytes is kernel + initrd.
	ImageBytes int64 `json:"image_bytes"`
	// Sizing is the reservation the image needs; ReservationBytes what there
	// was when it was armed.
	Sizing           Sizing `json:"sizing"`
	ReservationBytes int64  `json:"reservation_bytes"`
	// Previous holds the fault-routing sysctls' values from before the first
	// Arm; Disarm writes them back.
	Previous map[string]string `json:"previous_sysctls,omitempty"`
	// MemoryMap is the firmware memory map read when arming (if readable).
	MemoryMap memmap.Map `json:"memory_map,omitempty"`
	// Warnings are the problems Arm was told to accept (Options.AllowNoRearm).
	Warnings []string `json:"warnings,omitempty"`
	// Firmware: no crash image, faults still routed to panic, and a panic
	// reboots through the firmware (RouteToFirmware: a crash loop's
	// decision). The image fields are empty.
	Firmware bool `json:"firmware,omitempty"`
}

func statePath(dir string) string { return filepath.Join(dir, stateFile) }

// ReadState reads the state file in dir. It returns (nil, nil) when there is
// none.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading crash state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("crash state %s: %w", statePath(dir), err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("crash state %s: version %d, want %d", statePath(dir), s.Version, stateVersion)
	}
	return &s, nil
}

// writeState replaces the state file atomically (atomicfile.WriteFile).
func writeState(dir string, s *State) error {
	if err := atomicfile.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing crash state: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("writing crash state: %w", err)
	}
	return atomicfile.WriteFile(statePath(dir), append(b, '\n'), 0o644)
}

func removeState(dir string) error {
	if err := os.Remove(statePath(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing crash state: %w", err)
	}
	return nil
}
