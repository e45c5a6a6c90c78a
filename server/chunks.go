package server

import "google.golang.org/protobuf/proto"

// Stream* RPCs send the results of their List* twin in chunks, so that no
// message nears the client's size limit (the kubelet's is 16 MiB) however
// many objects a node holds.
const (
	chunkItems = 100
	chunkBytes = 2 << 20
)

// sendChunks sends items in order, in messages of at most chunkItems items
// and about chunkBytes bytes (a single larger item goes alone). wrap builds
// one response from a chunk. No items, no message.
func sendChunks[T proto.Message, R any](items []T, wrap func([]T) R, send func(R) error) error {
	start, size := 0, 0
	for i, it := range items {
		n := proto.Size(it)
		if i > start && (i-start == chunkItems || size+n > chunkBytes) {
			if err := send(wrap(items[start:i])); err != nil {
				return err
			}
			start, size = i, 0
		}
		size += n
	}
	if start < len(items) {
		return send(wrap(items[start:]))
	}
	return nil
}
