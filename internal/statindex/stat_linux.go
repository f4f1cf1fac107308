package statindex

import (
	"io/fs"
	"syscall"
)

// statOf returns the stat data a record keeps (stat(2)'s st_dev, st_ino,
// st_size, st_mtim, st_ctim).
func statOf(fi fs.FileInfo) (record, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return record{}, false
	}
	return record{
		Dev:     uint64(st.Dev),
		Ino:     uint64(st.Ino),
		Size:    st.Size,
		MtimeNS: st.Mtim.Nano(),
		CtimeNS: st.Ctim.Nano(),
	}, true
}
