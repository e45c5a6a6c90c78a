package server

import (
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSendChunks(t *testing.T) {
	mk := func(n int, label string) []*runtimeapi.Container {
		out := make([]*runtimeapi.Container, n)
		for i := range out {
			out[i] = &runtimeapi.Container{Id: "c", Labels: map[string]string{"l": label}}
		}
		return out
	}
	big := strings.Repeat("x", chunkBytes/3)
	for _, tc := range []struct {
		name  string
		items []*runtimeapi.Container
		want  []int
	}{
		{"none", nil, nil},
		{"one", mk(1, ""), []int{1}},
		{"exact", mk(chunkItems, ""), []int{chunkItems}},
		{"300", mk(300, ""), []int{100, 100, 100}},
		{"301", mk(301, ""), []int{100, 100, 100, 1}},
		{"by bytes", mk(5, big), []int{2, 2, 1}},
		{"one too big", mk(2, big+big+big+big), []int{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			total := 0
			err := sendChunks(tc.items, func(c []*runtimeapi.Container) *runtimeapi.StreamContainersResponse {
				return &runtimeapi.StreamContainersResponse{Containers: c}
			}, func(r *runtimeapi.StreamContainersResponse) error {
				got = append(got, len(r.Containers))
				total += len(r.Containers)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if total != len(tc.items) || len(got) != len(tc.want) {
				t.Fatalf("chunks %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("chunks %v, want %v", got, tc.want)
				}
			}
		})
	}
}
