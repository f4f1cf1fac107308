//go:build !unix

package cpustop

func errnoName(error) string { return "" }
