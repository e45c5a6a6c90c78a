package validate

import (
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// linuxResources refuses values no kernel accepts (negative sizes and
// shares, oom_score_adj out of range, malformed cpusets) and unified keys
// that could act as a path. Absent resources pass.
func linuxResources(field string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	switch {
	case r.CpuPeriod < 0:
		return Errorf("%s.cpu_period %d is negative", field, r.CpuPeriod)
	case r.CpuQuota < -1:
		return Errorf("%s.cpu_quota %d is below -1 (no limit)", field, r.CpuQuota)
	case r.CpuShares < 0:
		return Errorf("%s.cpu_shares %d is negative", field, r.CpuShares)
	case r.MemoryLimitInBytes < 0:
		return Errorf("%s.memory_limit_in_bytes %d is negative", field, r.MemoryLimitInBytes)
	case r.MemorySwapLimitInBytes < -1:
		return Errorf("%s.memory_swap_limit_in_bytes %d is below -1 (no limit)", field, r.MemorySwapLimitInBytes)
	case r.OomScoreAdj < -1000 || r.OomScoreAdj > 1000:
		return Errorf("%s.oom_score_adj %d is outside [-1000, 1000]", field, r.OomScoreAdj)
	case strings.Trim(r.CpusetCpus, "0123456789,-") != "":
		return Errorf("%s.cpuset_cpus %q is not a CPU list", field, r.CpusetCpus)
	case strings.Trim(r.CpusetMems, "0123456789,-") != "":
		return Errorf("%s.cpuset_mems %q is not a memory node list", field, r.CpusetMems)
	}
	for _, h := range r.HugepageLimits {
		if h.GetPageSize() == "" {
			return Errorf("%s.hugepage_limits: page_size is required", field)
		}
	}
	for k := range r.Unified {
		if k == "" || k == "." || k == ".." || strings.ContainsAny(k, "/\x00") {
			return Errorf("%s.unified key %q is not a cgroup file name", field, k)
		}
	}
	return nil
}
