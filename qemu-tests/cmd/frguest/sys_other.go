//go:build !linux

package main

import (
	"errors"
	"os"
	"os/exec"
)

var errNotLinux = errors.New("frguest runs only on Linux")

func hostSystem() system {
	return system{
		release:    func() (string, error) { return "", errNotLinux },
		loadModule: func(*os.File) error { return errNotLinux },
		lookPath:   exec.LookPath,
		startBg:    func(*exec.Cmd) error { return errNotLinux },
		sleep:      sleepCtx,
		mount:      func(string, string, string) error { return errNotLinux },
	}
}

func releaseTTY() error { return nil }
