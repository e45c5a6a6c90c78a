// Package images pulls, resolves and stores the images the CRI manages, and
// accounts for the filesystem they live on.
package images

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/log"
)

// FSUsage is the image filesystem's usage at one moment.
type FSUsage struct {
	Timestamp  time.Time
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
}

// FSInfo keeps the snapshotter's usage, refreshed in the background every
// period (stats_collect_period) and on request, so ImageFsInfo never walks
// the disk on the caller's time.
type FSInfo struct {
	sn         snapshots.Snapshotter
	mountpoint string
	period     time.Duration

	refresh chan struct{}
	ready   chan struct{} // closed once the first collection is done

	mu   sync.RWMutex
	last FSUsage
}

// NewFSInfo accounts for the snapshots of sn, whose root is mountpoint.
func NewFSInfo(sn snapshots.Snapshotter, mountpoint string, period time.Duration) *FSInfo {
	return &FSInfo{
		sn:         sn,
		mountpoint: mountpoint,
		period:     period,
		refresh:    make(chan struct{}, 1),
		ready:      make(chan struct{}),
	}
}

// Run collects at once, then every period or when Refresh asks, until ctx ends.
func (f *FSInfo) Run(ctx context.Context) {
	t := time.NewTicker(f.period)
	defer t.Stop()
	first := true
	for {
		if err := f.collect(ctx); err != nil && ctx.Err() == nil {
			log.G(ctx).WithError(err).Warn("collecting image filesystem usage")
		}
		if first {
			close(f.ready)
			first = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.refresh:
		}
	}
}

// Refresh asks for a collection soon, e.g. after a pull or a removal.
func (f *FSInfo) Refresh() {
	select {
	case f.refresh <- struct{}{}:
	default:
	}
}

// Usage returns the latest collection, waiting for the first one.
func (f *FSInfo) Usage(ctx context.Context) (FSUsage, error) {
	select {
	case <-f.ready:
	case <-ctx.Done():
		return FSUsage{}, ctx.Err()
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.last, nil
}

func (f *FSInfo) collect(ctx context.Context) error {
	var bytes, inodes int64
	err := f.sn.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		u, err := f.sn.Usage(ctx, info.Name)
		if err != nil {
			// A snapshot removed during the walk is not an error.
			log.G(ctx).WithError(err).WithField("snapshot", info.Name).Debug("snapshot usage")
			return nil
		}
		bytes += u.Size
		inodes += u.Inodes
		return nil
	})
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.last = FSUsage{Timestamp: time.Now(), Mountpoint: f.mountpoint, UsedBytes: uint64(bytes), InodesUsed: uint64(inodes)}
	f.mu.Unlock()
	return nil
}
