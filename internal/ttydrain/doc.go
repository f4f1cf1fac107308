// Package ttydrain waits for a terminal's output to leave the machine
// before a reboot takes the tty buffer with it: what the CLI prints before
// a kexec, and what the QEMU guest prints before it panics a kernel on
// purpose.
package ttydrain
