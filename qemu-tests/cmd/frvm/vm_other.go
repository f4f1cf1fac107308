//go:build !linux

package main

import "errors"

var errLinux = errors.New("frvm runs on Linux only")

func start(qdir, loop string) error        { return errLinux }
func suspend(area string) error            { return errLinux }
func resume(qdir, loop, area string) error { return errLinux }
