// Package supervisor runs the child processes of lightshark-mini, the
// all-in-one command: lightshark-apiserver and lightshark-capturer, as two
// processes with separate privileges inside one container.
//
// It starts each child with its own credentials (an unprivileged uid) and
// ambient capabilities (CAP_NET_RAW for the capturer only), restarts a
// child that dies with exponential backoff, gives up with a clear error
// when a child cannot start at all, stops the children in reverse order of
// starting (SIGTERM, then SIGKILL after a timeout) when its context is
// cancelled, and re-emits every line the children write on its own
// standard error, attributed to the child (proc=NAME).
//
// Children never outlive the supervisor: each gets SIGKILL from the kernel
// when the supervisor dies (PR_SET_PDEATHSIG on Linux), and runs in its own
// process group, so a terminal's Ctrl-C reaches only the supervisor, which
// then stops the children in order.
//
// It is the only non-test package of the module allowed to import os/exec.
// It imports the standard library and golang.org/x/sys/unix only, and no
// other package of the project. Ambient capabilities and the parent-death
// signal need Linux; on other Unix systems children cannot get
// capabilities and may outlive a supervisor killed with SIGKILL. It does
// not build on Windows.
package supervisor
