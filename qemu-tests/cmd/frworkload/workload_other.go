//go:build !linux

package main

import "errors"

var errLinux = errors.New("frworkload runs on Linux only")

func makeCgroup(string) error                              { return errLinux }
func startFill(string, int64, int64, uint64, string) error { return errLinux }
func serve(string, int64, int64, uint64, string) error     { return errLinux }
func verify(string, int64, int64) error                    { return errLinux }
func hashFile(string) error                                { return errLinux }
