package stats

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Interface is one network interface's counters.
type Interface struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// Network is a pod's interfaces at one moment.
type Network struct {
	Timestamp  time.Time
	Interfaces []Interface
}

// Default is the pod's main interface: eth0 (the name the CNI gives it),
// else the first.
func (n Network) Default() (Interface, bool) {
	var first *Interface
	for i := range n.Interfaces {
		it := &n.Interfaces[i]
		if it.Name == "eth0" {
			return *it, true
		}
		if first == nil && it.Name != "lo" {
			first = it
		}
	}
	if first == nil {
		return Interface{}, false
	}
	return *first, true
}

// ReadNetwork reads the counters of the network namespace pid lives in:
// /proc/<pid>/net/dev shows that process's namespace, so no setns is needed.
func ReadNetwork(pid uint32) (Network, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return Network{}, fmt.Errorf("read pod network counters: %w", err)
	}
	defer f.Close()
	ifs, err := parseNetDev(f)
	if err != nil {
		return Network{}, fmt.Errorf("parse /proc/%d/net/dev: %w", pid, err)
	}
	// Loopback traffic never leaves the pod; the kubelet ignores it too.
	ifs = slices.DeleteFunc(ifs, func(i Interface) bool { return i.Name == "lo" })
	return Network{Timestamp: time.Now(), Interfaces: ifs}, nil
}

// parseNetDev reads the /proc/net/dev table: two header lines, then
// "name: 8 receive counters 8 transmit counters".
func parseNetDev(r io.Reader) ([]Interface, error) {
	var out []Interface
	sc := bufio.NewScanner(r)
	for line := 0; sc.Scan(); line++ {
		if line < 2 {
			continue
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("line %d: no interface name", line+1)
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			return nil, fmt.Errorf("line %d: %d fields, want 16", line+1, len(f))
		}
		var v [16]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line+1, err)
			}
			v[i] = n
		}
		out = append(out, Interface{
			Name:    strings.TrimSpace(name),
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11],
		})
	}
	return out, sc.Err()
}
