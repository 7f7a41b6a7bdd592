/*
 * llmos/sandbox.h - run a program (Debian's python3, /bin/sh) confined, for the python and
 * shell tools (src/tools/sandbox.c; docs/tools.md draws it).
 *
 * A run is a child in new user, mount, PID, network, IPC, UTS and cgroup namespaces:
 *   - its root is a read-only tmpfs holding bind mounts of the interpreters, a short list of
 *     utilities for the shell, and their libraries; a tmpfs /tmp and /dev/shm; /dev/null, zero,
 * random, urandom; a /proc of its own PID namespace; and the caller's workspace at /work, the one
 *     writable place that outlives the run;
 *   - an empty network namespace (not even loopback is up);
 *   - uid 1000 inside, mapped to the caller's uid outside, or to nobody (65534) when the
 *     caller is root, so that the kernel's per-user limits apply; no capabilities, no new
 *     privileges, every mount nosuid;
 *   - a seccomp filter (libseccomp) that lets through the system calls the interpreters use
 *     and kills the process on any other (ptrace, mount, unshare, keyctl, bpf, a socket of any
 *     family but AF_UNIX, a clone that asks for namespaces, ...);
 *   - rlimits on CPU time, address space, processes, file size and open files; a cgroup v2
 *     of its own (pids.max, memory.max) where one can be made, said in `notes` when not;
 *   - a wall-clock timeout that kills the PID namespace's init, which takes every process of
 *     the namespace with it (and cgroup.kill where there is a cgroup);
 *   - stdout and stderr kept up to a cap each, the rest read and dropped.
 *
 * Works as root and as an unprivileged user where the kernel lets users make user namespaces;
 * where it does not, sandbox_probe and sandbox_exec fail with LLMOS_ERR_UNSUPPORTED naming
 * the sysctl to change.
 */
#ifndef LLMOS_SANDBOX_H
#define LLMOS_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "llmos/base.h"

/* The uid and gid a run has inside its namespace. */
#define SANDBOX_INSIDE_ID 1000

/* Limits of one run; a zero field takes the default in brackets. */
typedef struct sandbox_limits {
    double wall_s;       /* wall-clock time before the whole run is killed [10 s] */
    int cpu_s;           /* RLIMIT_CPU, seconds [10] */
    size_t memory_bytes; /* RLIMIT_AS, and memory.max in the cgroup [1 GiB] */
    int processes;       /* RLIMIT_NPROC, and pids.max in the cgroup [64] */
    size_t file_bytes;   /* RLIMIT_FSIZE: the largest file it may write [64 MiB] */
    int open_files;      /* RLIMIT_NOFILE [256] */
    size_t output_bytes; /* stdout and stderr kept, each [64 KiB] */
} sandbox_limits;

/* One run. */
typedef struct sandbox_spec {
    const char *const *argv; /* argv[0]: a path inside the sandbox ("/usr/bin/python3");
                                NULL-terminated */
    const char *stdin_data;  /* fed to the program's stdin, then EOF (may be NULL) */
    size_t stdin_len;
    const char *workspace; /* a directory of the host, mounted read-write at /work (required) */
    sandbox_limits limits;
} sandbox_spec;

/* What came of a run. */
typedef struct sandbox_result {
    llmos_buf out, err; /* stdout and stderr, up to limits.output_bytes each */
    bool out_truncated, err_truncated;
    int exit_code;   /* the program's exit status; -1 when a signal ended it */
    int signal;      /* the signal that ended it (SIGSYS: the seccomp filter), 0 */
    bool timed_out;  /* killed at limits.wall_s */
    double wall_s;   /* from the clone to the last byte of output */
    char notes[256]; /* what confinement was in force beyond the namespaces,
                        seccomp and rlimits: "cgroup llmos-sandbox-12-3" or
                        "no cgroup: <why>" */
} sandbox_result;

/* Can this machine run sandboxes? LLMOS_OK, or LLMOS_ERR_UNSUPPORTED saying what refused (a
 * kernel without user namespaces names the sysctl). The answer is found by a trial run
 * (sh -c 'exit 7') and remembered; a passing failure of the trial (no memory, a full
 * process table: another error) is returned and tried again on the next call. */
LLMOS_API LLMOS_NODISCARD llmos_err sandbox_probe(void);

/* Run spec in a sandbox and wait for it (at most limits.wall_s, then kill). The program's own
 * failure (a non-zero exit, a signal, the timeout) is in *out, not an error of this call;
 * errors are llmos's: LLMOS_ERR_UNSUPPORTED (no namespaces here), LLMOS_ERR_IO (a pipe, a
 * clone, the workspace), LLMOS_ERR_INVALID (a bad spec). Free *out with
 * sandbox_result_free, also after an error. Safe to call from several threads at once. */
LLMOS_API LLMOS_NODISCARD llmos_err sandbox_exec(const sandbox_spec *spec, sandbox_result *out);
LLMOS_API void sandbox_result_free(sandbox_result *r);

/* The owner outside of what a run writes in its workspace (the caller's ids, or nobody's when
 * the caller is root). A workspace and the files llmos writes there for a run (the files tool)
 * belong to it, so that the run can change them. */
LLMOS_API void sandbox_owner(uid_t *uid, gid_t *gid);

/* The python3 and sh inside (argv[0] of a spec). */
#define SANDBOX_PYTHON "/usr/bin/python3"
#define SANDBOX_SH     "/bin/sh"

#endif
