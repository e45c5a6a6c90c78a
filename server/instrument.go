package server

import (
	"context"
	"errors"
	"runtime/debug"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	metrics "github.com/docker/go-metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodecri/nodecri/validate"
)

// Metrics is the namespace of the CRI services' metrics; the plugin
// registers it on containerd's metrics endpoint.
var Metrics = metrics.NewNamespace("nodecri", "cri", nil)

var (
	rpcRequests = Metrics.NewLabeledCounter("requests", "CRI requests by method and gRPC code", "method", "code")
	rpcLatency  = Metrics.NewLabeledTimer("request_duration", "CRI request latency by method and gRPC code", "method", "code")
)

// instrumented registers services with every method wrapped: validation,
// error-to-status mapping, panic recovery and metrics, in one place. The
// services are registered on containerd's own gRPC server, whose interceptor
// chain we cannot extend, so the wrapping happens at registration. Every
// handler runs in the containerd namespace ns.
type instrumented struct {
	grpc.ServiceRegistrar
	ns string
}

func (r instrumented) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i := range d.Methods {
		orig := d.Methods[i].Handler
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, outer grpc.UnaryServerInterceptor) (any, error) {
			return orig(srv, ctx, dec, chain(outer, r.unary))
		}
	}
	d.Streams = slices.Clone(desc.Streams)
	for i := range d.Streams {
		orig := d.Streams[i].Handler
		name := d.Streams[i].StreamName
		d.Streams[i].Handler = func(srv any, ss grpc.ServerStream) (err error) {
			start := time.Now()
			defer func() {
				if p := recover(); p != nil {
					err = panicked(ss.Context(), name, p)
				}
				err = toStatus(err)
				record(name, err, start)
			}()
			return orig(srv, namespacedStream{ss, r.ns})
		}
	}
	r.ServiceRegistrar.RegisterService(&d, impl)
}

// chain runs ours inside containerd's interceptor, if it passed one.
func chain(outer, inner grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	if outer == nil {
		return inner
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return outer(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return inner(ctx, req, info, h)
		})
	}
}

func (r instrumented) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	method := methodName(info.FullMethod)
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, panicked(ctx, method, p)
		}
		err = toStatus(err)
		if err != nil {
			l := log.G(ctx).WithError(err).WithField("method", method)
			if c := status.Code(err); c == codes.Internal || c == codes.Unknown {
				l.Error("CRI request failed")
			} else {
				l.Debug("CRI request failed")
			}
		}
		record(method, err, start)
	}()
	if err := validate.Request(req); err != nil {
		return nil, err
	}
	return h(namespaces.WithNamespace(ctx, r.ns), req)
}

func record(method string, err error, start time.Time) {
	code := status.Code(err).String()
	rpcRequests.WithValues(method, code).Inc()
	rpcLatency.WithValues(method, code).UpdateSince(start)
}

// toStatus maps errdefs errors to gRPC codes; statuses pass unchanged.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	return errgrpc.ToGRPC(err)
}

// panicked keeps a bug in one handler from taking the node's runtime down.
func panicked(ctx context.Context, method string, p any) error {
	log.G(ctx).WithField("method", method).WithField("panic", p).Errorf("CRI handler panicked\n%s", debug.Stack())
	return status.Errorf(codes.Internal, "internal error in %s", method)
}

func methodName(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// namespacedStream gives a streaming handler the CRI's namespace ns, and
// validates its request as the handler receives it, as unary calls are.
type namespacedStream struct {
	grpc.ServerStream
	ns string
}

func (s namespacedStream) Context() context.Context {
	return namespaces.WithNamespace(s.ServerStream.Context(), s.ns)
}

func (s namespacedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return validate.Request(m)
}
