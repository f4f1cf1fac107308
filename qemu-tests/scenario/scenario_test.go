package scenario

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDecodeJSONWithKernelLines(t *testing.T) {
	// What the console showed once: a kernel warning printed into the
	// middle of a JSON string that itself quotes kernel log lines.
	out := "[    8.1] x\n" +
		"[    9.000001] virtio_blk virtio0: probe\n" +
		"{\n  \"log\": [\n    \"[    2.165466] zswap: loaded\",\n" +
		"    \"[    2.19[    9.042941] hrtimer: interrupt took 14347830 ns\n1692] Key type encrypted registered\"\n  ],\n" +
		"[   10.123456] another line between tokens\n" +
		"  \"n\": 3\n}\n"
	var v struct {
		Log []string `json:"log"`
		N   int      `json:"n"`
	}
	if err := DecodeJSON(out, &v); err != nil {
		t.Fatal(err)
	}
	want := []string{"[    2.165466] zswap: loaded", "[    2.191692] Key type encrypted registered"}
	if len(v.Log) != 2 || v.Log[0] != want[0] || v.Log[1] != want[1] || v.N != 3 {
		t.Errorf("decoded %+v, want log %q and n 3", v, want)
	}
}

func TestStats(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		in   []time.Duration
		want Stat
	}{
		{nil, Stat{}},
		{[]time.Duration{3 * s, 1 * s, 2 * s}, Stat{Median: 2 * s, Min: 1 * s, Max: 3 * s}},
	} {
		if got := Stats(tc.in); got != tc.want {
			t.Errorf("Stats(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestDecodeReread: a status read whose output does not decode is read
// once more (and the first failure logged); a command that changes
// something is never run twice; two bad reads fail naming both.
func TestDecodeReread(t *testing.T) {
	reads := func(outs ...string) (func() (string, error), *int) {
		n := 0
		return func() (string, error) {
			out := outs[min(n, len(outs)-1)]
			n++
			return out, nil
		}, &n
	}
	var logged []string
	logf := func(format string, a ...any) { logged = append(logged, fmt.Sprintf(format, a...)) }

	var st struct{ Generation int }
	run, n := reads(`{"generation": 2`, `{"generation": 3}`)
	if err := decodeReread("status", &st, run, logf); err != nil || st.Generation != 3 || *n != 2 || len(logged) != 1 {
		t.Errorf("status, torn then whole: err %v, generation %d, %d runs, logged %q; want the second read decoded, the first logged", err, st.Generation, *n, logged)
	}
	run, n = reads(`{"loaded": tru`, `{"loaded": true}`)
	if err := decodeReread("stage /m.json", &st, run, logf); err == nil || *n != 1 {
		t.Errorf("stage, torn: err %v, %d runs; want the error and no second stage", err, *n)
	}
	run, n = reads(`{"generation": 2`, `no json`)
	if err := decodeReread("crash status", &st, run, logf); err == nil || *n != 2 || !strings.Contains(err.Error(), "first read") {
		t.Errorf("crash status, torn twice: err %v, %d runs; want an error naming both reads", err, *n)
	}
}
