package crashhandler

import (
	"fmt"
	"sort"
	"strings"
)

// LogRecord is one record of the crashed kernel's printk ring buffer.
type LogRecord struct {
	Seq uint64 `json:"seq"`
	// TsNsec is the local clock (since boot) when the record was stored.
	TsNsec uint64 `json:"ts_nsec"`
	// CallerID is the task's PID, or 0x80000000 + CPU in interrupt/NMI
	// context.
	CallerID uint32 `json:"caller_id"`
	Text     string `json:"text"`
}

// Lines formats the record like dmesg: "[    1.234567] text", one line per
// line of text.
func (r LogRecord) Lines() []string {
	prefix := fmt.Sprintf("[%5d.%06d] ", r.TsNsec/1e9, r.TsNsec%1e9/1e3)
	parts := strings.Split(r.Text, "\n")
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = prefix + p
	}
	return out
}

// callerCPU returns the CPU of a record printed outside task context.
func (r LogRecord) callerCPU() (int, bool) {
	if r.CallerID&0x80000000 != 0 {
		return int(r.CallerID &^ 0x80000000), true
	}
	return 0, false
}

// Descriptor states and layout of the lockless printk ring buffer
// (kernel/printk/printk_ringbuffer.h, Linux >= 5.10): the top two bits of a
// descriptor's state_var hold the state, the rest the descriptor ID.
const (
	descFlagsShift = 62
	descIDMask     = 1<<descFlagsShift - 1
	descCommitted  = 1
	descFinalized  = 2
	blkIDSize      = 8 // sizeof(unsigned long) heading every data block
	lposNoData     = 0x3
)

// prbLayout holds the struct sizes and field offsets the kernel exports in
// VMCOREINFO (kernel/printk/printk.c, log_buf_vmcoreinfo_setup).
type prbLayout struct {
	ringDesc, ringText                            uint64
	descRingCountBits, descRingDescs, descRingInf uint64
	descRingHead, descRingTail                    uint64
	descSize, descState, descTextLpos             uint64
	lposBegin, lposNext                           uint64
	infoSize, infoSeq, infoTs, infoLen, infoCall  uint64
	dataRingSizeBits, dataRingData                uint64
	counter                                       uint64
}

func readPrbLayout(vi VMCOREINFO) (prbLayout, error) {
	var l prbLayout
	var missing []string
	get := func(dst *uint64, kind, name string) {
		var v uint64
		var ok bool
		if kind == "SIZE" {
			v, ok = vi.Size(name)
		} else {
			v, ok = vi.Offset(name)
		}
		if !ok {
			missing = append(missing, kind+"("+name+")")
		}
		*dst = v
	}
	get(&l.ringDesc, "OFFSET", "printk_ringbuffer.desc_ring")
	get(&l.ringText, "OFFSET", "printk_ringbuffer.text_data_ring")
	get(&l.descRingCountBits, "OFFSET", "prb_desc_ring.count_bits")
	get(&l.descRingDescs, "OFFSET", "prb_desc_ring.descs")
	get(&l.descRingInf, "OFFSET", "prb_desc_ring.infos")
	get(&l.descRingHead, "OFFSET", "prb_desc_ring.head_id")
	get(&l.descRingTail, "OFFSET", "prb_desc_ring.tail_id")
	get(&l.descSize, "SIZE", "prb_desc")
	get(&l.descState, "OFFSET", "prb_desc.state_var")
	get(&l.descTextLpos, "OFFSET", "prb_desc.text_blk_lpos")
	get(&l.lposBegin, "OFFSET", "prb_data_blk_lpos.begin")
	get(&l.lposNext, "OFFSET", "prb_data_blk_lpos.next")
	get(&l.infoSize, "SIZE", "printk_info")
	get(&l.infoSeq, "OFFSET", "printk_info.seq")
	get(&l.infoTs, "OFFSET", "printk_info.ts_nsec")
	get(&l.infoLen, "OFFSET", "printk_info.text_len")
	get(&l.infoCall, "OFFSET", "printk_info.caller_id")
	get(&l.dataRingSizeBits, "OFFSET", "prb_data_ring.size_bits")
	get(&l.dataRingData, "OFFSET", "prb_data_ring.data")
	// atomic_long_t.counter is 0 everywhere; older kernels do not export it.
	l.counter, _ = vi.Offset("atomic_long_t.counter")
	if len(missing) > 0 {
		return l, fmt.Errorf("%w: VMCOREINFO lacks %s (kernel without the lockless printk ring buffer?)", ErrBadVmcore, strings.Join(missing, ", "))
	}
	if l.descSize == 0 || l.descSize > 4096 || l.infoSize == 0 || l.infoSize > 4096 ||
		l.descState+8 > l.descSize || l.descTextLpos+max(l.lposBegin, l.lposNext)+8 > l.descSize ||
		max(l.infoSeq, l.infoTs)+8 > l.infoSize || l.infoLen+2 > l.infoSize || l.infoCall+4 > l.infoSize {
		return l, fmt.Errorf("%w: implausible printk struct layout in VMCOREINFO", ErrBadVmcore)
	}
	return l, nil
}

// ReadPrintkLog walks the crashed kernel's printk ring buffer (the lockless
// prb of Linux >= 5.10) and returns its committed and finalized records in
// sequence order.
//
// It reads the pointer at SYMBOL(prb), then the descriptor ring (descs,
// infos, head_id, tail_id) and the text data ring, and decodes every
// descriptor from tail_id to head_id whose ID matches, the way the kernel's
// reader does (printk_ringbuffer.c: desc_read, get_data).
func ReadPrintkLog(v *Vmcore, vi VMCOREINFO) ([]LogRecord, error) {
	prbSym, ok := vi.Symbol("prb")
	if !ok {
		return nil, fmt.Errorf("%w: VMCOREINFO has no SYMBOL(prb) (kernel older than 5.10?)", ErrBadVmcore)
	}
	l, err := readPrbLayout(vi)
	if err != nil {
		return nil, err
	}
	prb, err := v.readU64(prbSym)
	if err != nil {
		return nil, fmt.Errorf("reading prb pointer: %w", err)
	}
	descRing, textRing := prb+l.ringDesc, prb+l.ringText
	countBits, err := v.readU32(descRing + l.descRingCountBits)
	if err != nil {
		return nil, fmt.Errorf("reading desc ring: %w", err)
	}
	sizeBits, err := v.readU32(textRing + l.dataRingSizeBits)
	if err != nil {
		return nil, fmt.Errorf("reading text ring: %w", err)
	}
	if countBits == 0 || countBits > 22 || sizeBits < 5 || sizeBits > 26 {
		return nil, fmt.Errorf("%w: implausible printk ring (2^%d descriptors, 2^%d text bytes)", ErrBadVmcore, countBits, sizeBits)
	}
	var descsVA, infosVA, head, tail, dataVA uint64
	for _, f := range []struct {
		dst *uint64
		va  uint64
	}{
		{&descsVA, descRing + l.descRingDescs},
		{&infosVA, descRing + l.descRingInf},
		{&head, descRing + l.descRingHead + l.counter},
		{&tail, descRing + l.descRingTail + l.counter},
		{&dataVA, textRing + l.dataRingData},
	} {
		if *f.dst, err = v.readU64(f.va); err != nil {
			return nil, fmt.Errorf("reading printk ring: %w", err)
		}
	}
	count := uint64(1) << countBits
	descs, err := v.ReadVirt(descsVA, int(count*l.descSize))
	if err != nil {
		return nil, fmt.Errorf("reading printk descriptors: %w", err)
	}
	infos, err := v.ReadVirt(infosVA, int(count*l.infoSize))
	if err != nil {
		return nil, fmt.Errorf("reading printk infos: %w", err)
	}
	data, err := v.ReadVirt(dataVA, 1<<sizeBits)
	if err != nil {
		return nil, fmt.Errorf("reading printk text ring: %w", err)
	}

	o := v.order
	var recs []LogRecord
	id, head := tail&descIDMask, head&descIDMask
	for i := uint64(0); i <= count; i++ {
		idx := id & (count - 1)
		d := descs[idx*l.descSize:]
		sv := o.Uint64(d[l.descState:])
		state := sv >> descFlagsShift
		if sv&descIDMask == id && (state == descCommitted || state == descFinalized) {
			begin := o.Uint64(d[l.descTextLpos+l.lposBegin:])
			next := o.Uint64(d[l.descTextLpos+l.lposNext:])
			if text, ok := blockData(data, sizeBits, begin, next); ok {
				in := infos[idx*l.infoSize:]
				n := int(o.Uint16(in[l.infoLen:]))
				recs = append(recs, LogRecord{
					Seq:      o.Uint64(in[l.infoSeq:]),
					TsNsec:   o.Uint64(in[l.infoTs:]),
					CallerID: o.Uint32(in[l.infoCall:]),
					Text:     string(text[:min(n, len(text))]),
				})
			}
		}
		if id == head {
			break
		}
		id = (id + 1) & descIDMask
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Seq < recs[j].Seq })
	return recs, nil
}

// blockData returns the text of a data block described by its logical
// positions, as get_data() in printk_ringbuffer.c: a block lies within one
// wrap of the ring, or, if it would wrap, is stored from the ring's start.
// Each block starts with the descriptor ID (blkIDSize bytes).
func blockData(ring []byte, sizeBits uint32, begin, next uint64) ([]byte, bool) {
	if begin&1 == 1 && next&1 == 1 {
		return nil, begin == lposNoData && next == lposNoData
	}
	size := uint64(1) << sizeBits
	wraps := func(lpos uint64) uint64 { return lpos >> sizeBits }
	var start, n uint64
	switch {
	case wraps(begin) == wraps(next) && begin < next:
		start, n = begin&(size-1), next-begin
	case wraps(begin+size) == wraps(next):
		start, n = 0, next&(size-1)
	default:
		return nil, false
	}
	if begin%blkIDSize != 0 || next%blkIDSize != 0 || n < blkIDSize || start+n > size {
		return nil, false
	}
	return ring[start+blkIDSize : start+n], true
}
