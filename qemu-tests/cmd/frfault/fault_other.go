//go:build !linux

package main

import "errors"

var errNotLinux = errors.New("frfault works on Linux only")

func hang(string) error { return errNotLinux }
func orphan() error     { return errNotLinux }

func midwrite(string, []string) error { return errNotLinux }
