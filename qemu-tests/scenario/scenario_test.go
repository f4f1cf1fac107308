package scenario

import (
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
