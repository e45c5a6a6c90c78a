package validate

import runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

// Exec checks an Exec request: a container, a command, and at least one
// stream; a terminal merges stderr into stdout, so not both.
func Exec(r *runtimeapi.ExecRequest) error {
	if err := ID("container_id", r.GetContainerId()); err != nil {
		return err
	}
	if len(r.GetCmd()) == 0 {
		return Errorf("cmd is required")
	}
	if err := argv("cmd", r.GetCmd(), nil); err != nil {
		return err
	}
	return streams(r.GetStdin(), r.GetStdout(), r.GetStderr(), r.GetTty())
}

// Attach checks an Attach request as Exec, without a command.
func Attach(r *runtimeapi.AttachRequest) error {
	if err := ID("container_id", r.GetContainerId()); err != nil {
		return err
	}
	return streams(r.GetStdin(), r.GetStdout(), r.GetStderr(), r.GetTty())
}

// PortForward checks a PortForward request: a sandbox, and TCP ports when
// given (the client may also name them on the stream).
func PortForward(r *runtimeapi.PortForwardRequest) error {
	if err := ID("pod_sandbox_id", r.GetPodSandboxId()); err != nil {
		return err
	}
	for _, p := range r.GetPort() {
		if p <= 0 || p > 65535 {
			return Errorf("port %d is not a TCP port", p)
		}
	}
	return nil
}

func streams(stdin, stdout, stderr, tty bool) error {
	if !stdin && !stdout && !stderr {
		return Errorf("one of stdin, stdout and stderr is required")
	}
	if tty && stderr {
		return Errorf("tty and stderr cannot both be set: a terminal carries stderr on stdout")
	}
	return nil
}
