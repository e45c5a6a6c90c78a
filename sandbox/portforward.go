package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/errdefs"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// This file is the pod-network side of the streaming server (package
// streaming): Manager implements its Pods interface. The server calls
// PortForward once a client has connected to a URL handed out by the
// CRI's PortForward.

// PortForward connects stream to TCP port on the pod's loopback: dialled
// from inside the pod's network namespace (the socket stays there), or on
// the node for a host-network pod.
func (m *Manager) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port %d is not a TCP port: %w", port, errdefs.ErrInvalidArgument)
	}
	sb, err := m.store.Get(sandboxID)
	if err != nil {
		return err
	}
	st := sb.Status()
	if st.State() != runtimeapi.PodSandboxState_SANDBOX_READY {
		return fmt.Errorf("sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	var conn net.Conn
	if sb.HostNetwork() {
		conn, err = dialLoopback(ctx, port)
	} else if st.NetNSPath == "" {
		return fmt.Errorf("sandbox %s has no network namespace: %w", sb.ID, errdefs.ErrFailedPrecondition)
	} else {
		err = netns.LoadNetNS(st.NetNSPath).Do(func(cnins.NetNS) error {
			var derr error
			conn, derr = dialLoopback(ctx, port)
			return derr
		})
	}
	if err != nil {
		return fmt.Errorf("port-forward to %s port %d: %w", sb.ID, port, err)
	}
	defer conn.Close()

	go func() {
		io.Copy(conn, stream)
		// The client has sent all it will; the pod's server may still
		// answer, so only our sending side closes.
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	// Done when the pod's side closes (or the client goes away): the
	// library then closes the stream, and conn's close ends the copy above.
	if _, err := io.Copy(stream, conn); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("port-forward to %s port %d: %w", sb.ID, port, err)
	}
	return nil
}

// dialLoopback connects to port on 127.0.0.1, else on ::1 (IPv6-only pods),
// in the calling thread's network namespace: with an IP literal the socket
// is made in this goroutine, which netns.Do keeps on its thread.
func dialLoopback(ctx context.Context, port int32) (net.Conn, error) {
	var d net.Dialer
	p := strconv.Itoa(int(port))
	conn, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err == nil {
		return conn, nil
	}
	if conn6, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p)); err6 == nil {
		return conn6, nil
	}
	return nil, err
}
