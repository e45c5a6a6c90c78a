package daemon

import "testing"

func TestParseMountinfo(t *testing.T) {
	text := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 master:2 - cgroup cgroup rw,memory
40 22 0:45 /a\040b /mnt/with\040space rw - tmpfs tmp\011fs rw
short line
`
	got := ParseMountinfo(text)
	want := []Mount{
		{Root: "/", Point: "/", FSType: "ext4", Source: "/dev/sda1", SuperOptions: "rw,errors=remount-ro"},
		{Root: "/", Point: "/sys/fs/cgroup/memory", FSType: "cgroup", Source: "cgroup", SuperOptions: "rw,memory"},
		{Root: "/a b", Point: "/mnt/with space", FSType: "tmpfs", Source: "tmp\tfs", SuperOptions: "rw"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d mounts, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		got[i].Line = ""
		if got[i] != want[i] {
			t.Errorf("mount %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
