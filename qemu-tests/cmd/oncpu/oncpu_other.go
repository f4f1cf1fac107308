//go:build !linux

package main

import "errors"

func run(int, string, string) error { return errors.New("oncpu needs Linux") }
