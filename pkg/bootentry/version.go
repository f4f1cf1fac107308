package bootentry

import "strings"

// CompareVersions compares two version strings as the UAPI version format
// specification (systemd's strverscmp_improved) does, returning -1, 0 or
// +1 when a is older than, the same as or newer than b. Characters other
// than letters, digits and "~-^." are skipped; then, in increasing order:
// "~" (older than everything, even the end), the end of the string, "-",
// "^", ".", a run of letters (compared as text), a run of digits (compared
// as a number). So "6.1.0-28" is newer than "6.1.0-9", "6.2~rc1" older
// than "6.2".
func CompareVersions(a, b string) int {
	valid := func(c byte) bool {
		return isAlpha(c) || isDigit(c) || strings.IndexByte("~-^.", c) >= 0
	}
	at := func(s string) byte {
		if s == "" {
			return 0
		}
		return s[0]
	}
	for {
		for a != "" && !valid(a[0]) {
			a = a[1:]
		}
		for b != "" && !valid(b[0]) {
			b = b[1:]
		}
		ca, cb := at(a), at(b)
		if ca == '~' || cb == '~' {
			switch {
			case ca != '~':
				return 1
			case cb != '~':
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		}
		if a == "" || b == "" {
			return cmp(len(a), len(b))
		}
		if c, done := special(ca, cb); done {
			if c != 0 {
				return c
			}
			a, b = a[1:], b[1:]
			continue
		}
		if isDigit(ca) || isDigit(cb) {
			a = strings.TrimLeft(a, "0")
			b = strings.TrimLeft(b, "0")
			na, nb := span(a, isDigit), span(b, isDigit)
			if c := cmp(na, nb); c != 0 {
				return c
			}
			if c := strings.Compare(a[:na], b[:nb]); c != 0 {
				return c
			}
			a, b = a[na:], b[nb:]
			continue
		}
		na, nb := span(a, isAlpha), span(b, isAlpha)
		if c := strings.Compare(a[:na], b[:nb]); c != 0 {
			return c
		}
		a, b = a[na:], b[nb:]
	}
}

// special orders "-", "^" and ".", each older than what follows it in that
// list and than letters and digits; done is false when neither is one.
func special(ca, cb byte) (int, bool) {
	for _, sep := range []byte{'-', '^', '.'} {
		if ca == sep || cb == sep {
			switch {
			case ca != sep:
				return 1, true
			case cb != sep:
				return -1, true
			}
			return 0, true
		}
	}
	return 0, false
}

func span(s string, f func(byte) bool) int {
	n := 0
	for n < len(s) && f(s[n]) {
		n++
	}
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func cmp(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
