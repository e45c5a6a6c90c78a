package config

import (
	"bytes"
	"fmt"
	"strings"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/proto"
)

// DecodeOptions turns a handler's [options] table into the message its shim
// takes: runc's Options for io.containerd.runc.v2, the generic
// ConfigPath/ConfigBody options for other shims. Unknown keys are errors, so
// a misspelt option is caught at start rather than silently dropped.
func DecodeOptions(runtimeType string, opts map[string]any) (proto.Message, error) {
	var msg proto.Message
	switch runtimeType {
	case RuncRuntimeType:
		msg = &runcoptions.Options{}
	default:
		if len(opts) == 0 {
			return nil, nil
		}
		msg = &runtimeoptions.Options{}
	}
	if len(opts) == 0 {
		return msg, nil
	}
	b, err := toml.Marshal(opts)
	if err != nil {
		return nil, err
	}
	dec := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields()
	if err := dec.Decode(msg); err != nil {
		if serr, ok := err.(*toml.StrictMissingError); ok {
			var keys []string
			for _, e := range serr.Errors {
				keys = append(keys, strings.Join(e.Key(), "."))
			}
			return nil, fmt.Errorf("unknown option %s for runtime_type %s", strings.Join(keys, ", "), runtimeType)
		}
		return nil, err
	}
	return msg, nil
}
