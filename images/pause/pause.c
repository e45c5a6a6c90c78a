/*
 * pause: the process that holds a pod's namespaces open.
 *
 * It blocks until SIGINT or SIGTERM and then exits 0. When it is PID 1 of
 * the pod's PID namespace, orphaned processes are reparented to it, so it
 * reaps every exited child on SIGCHLD to keep zombies from piling up. It
 * prints nothing and works the same when it is not PID 1.
 *
 * Build: gcc -static -Os -o pause pause.c
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Exiting from the handler itself, rather than setting a flag the main loop
 * checks, avoids the window where a signal lands between the check and
 * pause() and is then slept through. _exit is async-signal-safe.
 */
static void on_terminate(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	int saved_errno = errno;

	(void)sig;
	/* One SIGCHLD may stand for several exited children. */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved_errno;
}

static int handle(int sig, void (*fn)(int), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

int main(void)
{
	if (handle(SIGINT, on_terminate, 0) < 0 ||
	    handle(SIGTERM, on_terminate, 0) < 0 ||
	    handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART) < 0)
		return 1;

	for (;;)
		pause();
}
