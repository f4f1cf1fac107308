package crashhandler

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// This file builds small synthetic vmcores: an ELF64 core with a PT_NOTE
// (PRSTATUS notes + VMCOREINFO) and PT_LOAD segments holding a printk ring
// buffer laid out like Linux 6.1's.

var le = binary.LittleEndian

type fakeLoad struct {
	vaddr, paddr uint64
	data         []byte
	memsz        uint64 // 0: len(data)
}

type fakeNote struct {
	name string
	typ  uint32
	desc []byte
}

type fakeCore struct {
	machine uint16
	notes   []fakeNote
	loads   []fakeLoad
}

func (c fakeCore) bytes() []byte {
	var notes []byte
	for _, n := range c.notes {
		var h [12]byte
		le.PutUint32(h[0:], uint32(len(n.name)+1))
		le.PutUint32(h[4:], uint32(len(n.desc)))
		le.PutUint32(h[8:], n.typ)
		notes = append(notes, h[:]...)
		notes = append(notes, pad4(append([]byte(n.name), 0))...)
		notes = append(notes, pad4(n.desc)...)
	}
	notes = append(notes, make([]byte, 12)...) // empty note ends the list
	phnum := 1 + len(c.loads)
	off := uint64(elfHeaderSize + phnum*phdrSize)
	eh := make([]byte, elfHeaderSize)
	copy(eh, "\x7fELF\x02\x01\x01")
	le.PutUint16(eh[16:], etCore)
	le.PutUint16(eh[18:], c.machine)
	le.PutUint32(eh[20:], 1)
	le.PutUint64(eh[32:], elfHeaderSize)
	le.PutUint16(eh[52:], elfHeaderSize)
	le.PutUint16(eh[54:], phdrSize)
	le.PutUint16(eh[56:], uint16(phnum))
	out := eh
	phdr := func(typ uint32, offset, vaddr, paddr, filesz, memsz uint64) {
		p := make([]byte, phdrSize)
		le.PutUint32(p[0:], typ)
		le.PutUint64(p[8:], offset)
		le.PutUint64(p[16:], vaddr)
		le.PutUint64(p[24:], paddr)
		le.PutUint64(p[32:], filesz)
		le.PutUint64(p[40:], memsz)
		out = append(out, p...)
	}
	phdr(ptNote, off, 0, 0, uint64(len(notes)), uint64(len(notes)))
	off += uint64(len(notes))
	for _, l := range c.loads {
		memsz := l.memsz
		if memsz == 0 {
			memsz = uint64(len(l.data))
		}
		phdr(ptLoad, off, l.vaddr, l.paddr, uint64(len(l.data)), memsz)
		off += uint64(len(l.data))
	}
	out = append(out, notes...)
	for _, l := range c.loads {
		out = append(out, l.data...)
	}
	return out
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// prstatusNote returns an x86-64 NT_PRSTATUS note for a task and rip.
func prstatusNote(pid int32, rip uint64) fakeNote {
	d := make([]byte, 336)
	le.PutUint32(d[32:], uint32(pid))
	le.PutUint64(d[112+16*8:], rip)
	return fakeNote{name: "CORE", typ: ntPRStatus, desc: d}
}

// Addresses of the fake kernel: the text mapping holds the prb pointer and
// the printk_ringbuffer struct; the direct map holds descs, infos and the
// text ring.
const (
	fakeTextVA   = 0xffffffff81000000
	fakeTextPA   = 0x1000000
	fakePrbSym   = fakeTextVA + 0x10
	fakeRingVA   = fakeTextVA + 0x100
	fakeDirectVA = 0xffff888000000000 + 0x2000000
	fakeDirectPA = 0x2000000
	fakeDescsVA  = fakeDirectVA
	fakeInfosVA  = fakeDirectVA + 0x1000
	fakeDataVA   = fakeDirectVA + 0x2000

	fakeCountBits = 3 // 8 descriptors
	fakeSizeBits  = 9 // 512 bytes of text
)

// fakeRec is one record to put in the fake ring.
type fakeRec struct {
	state  uint64 // descCommitted, descFinalized, 3 (reusable)
	idSkew uint64 // non-zero: the descriptor holds a stale ID
	seq    uint64
	ts     uint64
	caller uint32
	text   string
}

// vmcoreinfo61 is the printk part of a 6.1 x86-64 VMCOREINFO.
func vmcoreinfo61(extra ...string) string {
	lines := []string{
		"OSRELEASE=6.1.0-56-amd64",
		"BUILD-ID=0123456789abcdef",
		"PAGESIZE=4096",
		fmt.Sprintf("SYMBOL(prb)=%x", uint64(fakePrbSym)),
		"SIZE(printk_ringbuffer)=88",
		"OFFSET(printk_ringbuffer.desc_ring)=0",
		"OFFSET(printk_ringbuffer.text_data_ring)=48",
		"OFFSET(printk_ringbuffer.fail)=80",
		"SIZE(prb_desc_ring)=48",
		"OFFSET(prb_desc_ring.count_bits)=0",
		"OFFSET(prb_desc_ring.descs)=8",
		"OFFSET(prb_desc_ring.infos)=16",
		"OFFSET(prb_desc_ring.head_id)=24",
		"OFFSET(prb_desc_ring.tail_id)=32",
		"SIZE(prb_desc)=24",
		"OFFSET(prb_desc.state_var)=0",
		"OFFSET(prb_desc.text_blk_lpos)=8",
		"SIZE(prb_data_blk_lpos)=16",
		"OFFSET(prb_data_blk_lpos.begin)=0",
		"OFFSET(prb_data_blk_lpos.next)=8",
		"SIZE(printk_info)=88",
		"OFFSET(printk_info.seq)=0",
		"OFFSET(printk_info.ts_nsec)=8",
		"OFFSET(printk_info.text_len)=16",
		"OFFSET(printk_info.caller_id)=20",
		"OFFSET(printk_info.dev_info)=24",
		"SIZE(prb_data_ring)=32",
		"OFFSET(prb_data_ring.size_bits)=0",
		"OFFSET(prb_data_ring.data)=8",
		"OFFSET(prb_data_ring.head_lpos)=16",
		"OFFSET(prb_data_ring.tail_lpos)=24",
		"SIZE(atomic_long_t)=8",
		"OFFSET(atomic_long_t.counter)=0",
		"KERNELOFFSET=0",
		"CRASHTIME=1700000000",
	}
	return strings.Join(append(lines, extra...), "\n") + "\n"
}

// fakeVmcore lays recs out from descriptor ID firstID on, their text blocks
// from logical position firstLpos on, wrapping like the kernel's data_alloc
// (a block that would cross the ring's end is stored at its start).
func fakeVmcore(recs []fakeRec, firstID, firstLpos uint64, prstatus ...fakeNote) []byte {
	return fakeVmcoreCore(recs, firstID, firstLpos, prstatus...).bytes()
}

// fakeVmcoreCore is fakeVmcore before it is laid out: notes[len-1] is the
// VMCOREINFO note, loads[1].data the direct map (descriptors at 0, infos at
// 0x1000, the text ring at 0x2000).
func fakeVmcoreCore(recs []fakeRec, firstID, firstLpos uint64, prstatus ...fakeNote) fakeCore {
	const count, size = 1 << fakeCountBits, 1 << fakeSizeBits
	text := make([]byte, 0x200)
	le.PutUint64(text[0x10:], fakeRingVA) // prb = &printk_rb_dynamic
	ring := text[0x100:]
	le.PutUint32(ring[0:], fakeCountBits)
	le.PutUint64(ring[8:], fakeDescsVA)
	le.PutUint64(ring[16:], fakeInfosVA)
	le.PutUint64(ring[24:], (firstID+uint64(len(recs))-1)&descIDMask) // head
	le.PutUint64(ring[32:], firstID&descIDMask)                       // tail
	le.PutUint32(ring[48:], fakeSizeBits)
	le.PutUint64(ring[56:], fakeDataVA)

	direct := make([]byte, 0x2000+size)
	descs, infos, data := direct[0:], direct[0x1000:], direct[0x2000:]
	lpos := firstLpos
	for i, r := range recs {
		id := (firstID + uint64(i)) & descIDMask
		idx := id & (count - 1)
		d := descs[idx*24:]
		le.PutUint64(d[0:], r.state<<descFlagsShift|(id-r.idSkew)&descIDMask)
		blk := (blkIDSize + uint64(len(r.text)) + 7) &^ 7
		begin, next := lpos, lpos+blk
		start := begin & (size - 1)
		if begin>>fakeSizeBits != next>>fakeSizeBits {
			next = (next &^ (size - 1)) + blk
			start = 0
		}
		le.PutUint64(data[start:], id)
		copy(data[start+blkIDSize:], r.text)
		le.PutUint64(d[8:], begin)
		le.PutUint64(d[16:], next)
		lpos = next
		in := infos[idx*88:]
		le.PutUint64(in[0:], r.seq)
		le.PutUint64(in[8:], r.ts)
		le.PutUint16(in[16:], uint16(len(r.text)))
		le.PutUint32(in[20:], r.caller)
	}
	notes := append([]fakeNote(nil), prstatus...)
	notes = append(notes, fakeNote{name: "VMCOREINFO", desc: []byte(vmcoreinfo61())})
	return fakeCore{
		machine: emX86_64,
		notes:   notes,
		loads: []fakeLoad{
			{vaddr: fakeTextVA, paddr: fakeTextPA, data: text, memsz: 0x1000},
			{vaddr: fakeDirectVA, paddr: fakeDirectPA, data: direct},
		},
	}
}

// sysrqCrash is the log of `echo c > /proc/sysrq-trigger` on CPU 1. The
// last record does not fit before the ring's end and wraps.
var sysrqCrash = []fakeRec{
	{state: 3, seq: 0, text: "reusable: skipped"},
	{state: descFinalized, seq: 1, ts: 1_500_000, text: "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)"},
	{state: descFinalized, seq: 2, ts: 5_123_456_789, caller: 245, text: "sysrq: Trigger a crash"},
	{state: descFinalized, seq: 3, ts: 5_123_500_000, caller: 245, text: "Kernel panic - not syncing: sysrq triggered crash"},
	{state: descCommitted, seq: 4, ts: 5_123_600_000, caller: 245, text: "CPU: 1 PID: 245 Comm: sh Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2\nHardware name: QEMU Standard PC (Q35 + ICH9, 2009)"},
}

// sysrqCrashVmcore starts the text at index 296 of the 512-byte ring so the
// fourth block wraps.
func sysrqCrashVmcore() []byte {
	return fakeVmcore(sysrqCrash, 9, 2<<fakeSizeBits+296, prstatusNote(0, 0xffffffff81abcdef), prstatusNote(245, 0xffffffff81123456))
}
