package sandbox

import (
	"math"
	"strconv"
	"strings"

	gocni "github.com/containerd/go-cni"
)

// Pod annotations the kubelet uses for traffic shaping.
const (
	ingressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	egressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// bandwidth reads the pod's shaping annotations for the CNI bandwidth
// capability; nil when the pod has none or they do not parse.
func bandwidth(annotations map[string]string) *gocni.BandWidth {
	in, okIn := parseBits(annotations[ingressBandwidthAnnotation])
	out, okOut := parseBits(annotations[egressBandwidthAnnotation])
	if !okIn && !okOut {
		return nil
	}
	bw := &gocni.BandWidth{}
	if okIn {
		bw.IngressRate, bw.IngressBurst = in, math.MaxUint32
	}
	if okOut {
		bw.EgressRate, bw.EgressBurst = out, math.MaxUint32
	}
	return bw
}

// parseBits reads a Kubernetes quantity ("10M", "1Gi", "500k") in bits
// per second.
func parseBits(q string) (uint64, bool) {
	q = strings.TrimSpace(q)
	if q == "" {
		return 0, false
	}
	mult := 1.0
	for _, s := range []struct {
		suffix string
		m      float64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}} {
		if strings.HasSuffix(q, s.suffix) {
			q, mult = strings.TrimSuffix(q, s.suffix), s.m
			break
		}
	}
	v, err := strconv.ParseFloat(q, 64)
	if err != nil || v <= 0 {
		return 0, false
	}
	return uint64(v * mult), true
}
