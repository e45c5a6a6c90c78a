package server

import (
	"context"
	"net"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// stub answers with what each test needs; it is the boundary, the
// instrumentation is what is tested.
type stub struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	sawNamespace string
}

func (s *stub) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	s.sawNamespace, _ = namespaces.Namespace(ctx)
	return &runtimeapi.VersionResponse{}, nil
}

func (s *stub) Status(context.Context, *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	panic("boom")
}

func (s *stub) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return nil, errdefs.ErrNotFound
}

func (s *stub) UpdateRuntimeConfig(context.Context, *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	panic("the validator must refuse the request before the handler runs")
}

func serve(t *testing.T, impl *stub) runtimeapi.RuntimeServiceClient {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(instrumented{srv, "k8s.io"}, impl)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///buf",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

func TestInstrumentation(t *testing.T) {
	impl := &stub{}
	c := serve(t, impl)
	ctx := context.Background()

	if _, err := c.Status(ctx, &runtimeapi.StatusRequest{}); status.Code(err) != codes.Internal {
		t.Errorf("panicking handler: %v, want Internal", err)
	}
	if _, err := c.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Errorf("server not serving after a handler panicked: %v", err)
	}
	if impl.sawNamespace != "k8s.io" {
		t.Errorf("handler ran in namespace %q", impl.sawNamespace)
	}
	if _, err := c.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{}); status.Code(err) != codes.NotFound {
		t.Errorf("errdefs.ErrNotFound mapped to %v", err)
	}
	bad := &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "not-a-cidr"}}}
	if _, err := c.UpdateRuntimeConfig(ctx, bad); status.Code(err) != codes.InvalidArgument {
		t.Errorf("invalid request: %v, want InvalidArgument", err)
	}
	if _, err := c.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("unimplemented RPC: %v", err)
	}
}
