// Package cli is the fastreboot command line: it parses arguments, talks to
// the daemon (or an in-process agent) and prints results for people or, with
// --json, for programs. Main takes its output writers so that tests drive it
// like a user would.
package cli
