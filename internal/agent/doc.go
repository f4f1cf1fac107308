// Package agent keeps a generation's module cache alive for the fastreboot
// command: the cache is a set of sealed memfds, which live only as long as a
// process holds them, so `fastreboot daemon` runs an Agent that owns the
// cache and the fastreboot.Machine, and the other commands talk to it over a
// unix socket (HTTP with JSON bodies).
//
// Agent and Client implement the same Service interface, so the command line
// works the same against the daemon or, when none runs, against an Agent in
// its own process (whose cache then dies with it).
package agent
