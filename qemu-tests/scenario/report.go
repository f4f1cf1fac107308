package scenario

import (
	"fmt"
	"slices"
	"time"
)

// Stat is the median and range of repeated measurements.
type Stat struct {
	Median, Min, Max time.Duration
}

// Stats summarizes ds; empty ds is the zero Stat.
func Stats(ds []time.Duration) Stat {
	if len(ds) == 0 {
		return Stat{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Stat{Median: s[len(s)/2], Min: s[0], Max: s[len(s)-1]}
}

// String formats s as "median [min-max]" seconds.
func (s Stat) String() string {
	return fmt.Sprintf("%.2f [%.2f-%.2f]", s.Median.Seconds(), s.Min.Seconds(), s.Max.Seconds())
}

// Human formats a byte count for people.
func Human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
