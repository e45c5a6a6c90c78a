package daemon

import (
	"os"
	"strconv"
	"strings"
)

// Mount is one line of a mountinfo file (proc(5)).
type Mount struct {
	Root   string // field 4: the mounted path within its filesystem
	Point  string // field 5: where it is mounted
	FSType string // after the "-" separator
	Source string
	// SuperOptions are the filesystem's own options (a cgroup v1
	// hierarchy's controllers among them), comma-separated.
	SuperOptions string
	Line         string // the whole line, as read
}

// ParseMountinfo parses the text of a /proc/<pid>/mountinfo file, such as
// one read inside a container; lines it cannot read are skipped.
func ParseMountinfo(text string) []Mount {
	var mounts []Mount
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		m := Mount{Root: unescape(f[3]), Point: unescape(f[4]), Line: line}
		// Optional fields end with "-"; filesystem type and source follow.
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				if i+1 < len(f) {
					m.FSType = f[i+1]
				}
				if i+2 < len(f) {
					m.Source = unescape(f[i+2])
				}
				if i+3 < len(f) {
					m.SuperOptions = f[i+3]
				}
				break
			}
		}
		mounts = append(mounts, m)
	}
	return mounts
}

// Mounts are this process's mounts, in mount order.
func Mounts() []Mount {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return ParseMountinfo(string(b))
}

// MountsBelow lists the mount points below dir, in mount order.
func MountsBelow(dir string) []string {
	var below []string
	for _, m := range Mounts() {
		if strings.HasPrefix(m.Point, dir+"/") {
			below = append(below, m.Point)
		}
	}
	return below
}

// unescape undoes the kernel's octal escapes (\040 for a space, \011, \012,
// \134) in a mountinfo path.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
