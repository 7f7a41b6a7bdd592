/*
 * sandbox.c - run python3 or sh confined (llmos/sandbox.h says what a run is confined by).
 *
 * How a run goes:
 *
 *   llmos (parent)                               child = init of the new PID namespace
 *   ─────────────────────────────────────────    ──────────────────────────────────────────
 *   build once: the mount plan, the seccomp
 *   filter as BPF
 *   clone(NEWUSER|NEWNS|NEWPID|NEWNET|NEWIPC|
 *         NEWUTS|NEWCGROUP) ────────────────────► waits for "go"
 *   write uid_map, gid_map; make the cgroup
 *   and move the child in; "go" ───────────────► mounts the root in a tmpfs, pivots into it;
 *                                                 drops groups, becomes uid 1000, drops every
 *                                                 capability; no_new_privs; rlimits; seccomp
 *                                                 forks the program ──► execve(argv)
 *   feeds stdin, reads stdout/stderr (capped),    waits for it, sends its wait status, exits:
 *   until the child exits or the deadline:        the kernel kills the rest of the namespace
 *   then SIGKILL to init (+ cgroup.kill)
 *
 * The parent may be threaded (the HTTP server), so the cloned child, a copy of one thread of
 * it, calls no allocator and no library function that takes a lock: everything it needs
 * (paths, the BPF program, the environment) is prepared before the clone, and it makes raw
 * system calls only. Its failures come back on the status pipe as (step, errno), which the
 * parent turns into a message naming the step.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llmos/sandbox.h"

#define SBX_NOBODY   65534
#define SBX_BASE     "/tmp" /* where the child builds the new root, in its own mount ns */
#define SBX_MAX_OPS  160
#define SBX_STACK    (256 * 1024)
#define SBX_TMP_SIZE "size=16m"

/* ---- the plan: what the root holds -------------------------------------------------------- */

typedef enum sbx_kind {
    SBX_MKDIR, /* dst: a directory of the new root */
    SBX_BIND,  /* src (directory or file of the host) read-only at dst */
    SBX_DEV,   /* a device file of the host (src) read-write at dst */
    SBX_LINK,  /* dst: a symbolic link to src */
    SBX_TEXT,  /* dst: a file holding src */
} sbx_kind;

typedef struct sbx_op {
    sbx_kind kind;
    bool is_dir;          /* SBX_BIND: src is a directory (else a file) */
    unsigned long locked; /* SBX_BIND, SBX_DEV: flags of the host mount that a remount must keep */
    char src[PATH_MAX];
    char dst[PATH_MAX]; /* absolute, under SBX_BASE */
} sbx_op;

/* Utilities the shell tool may use besides sh's built-ins, where the host has them (each a
 * non-setuid program of coreutils, grep, sed, findutils, diffutils or mawk). */
static const char *const sbx_utilities[] = {
    "cat",   "ls",    "head",   "tail",  "wc",        "sort",    "uniq",   "cut",  "tr",
    "grep",  "sed",   "awk",    "mkdir", "rmdir",     "rm",      "cp",     "mv",   "touch",
    "date",  "env",   "expr",   "seq",   "basename",  "dirname", "sleep",  "find", "xargs",
    "diff",  "cmp",   "tee",    "od",    "sha256sum", "md5sum",  "base64", "du",   "stat",
    "ln",    "chmod", "printf", "echo",  "true",      "false",   "test",   "pwd",  "realpath",
    "nproc", "id",    "uname",  "paste", "fold",      "nl",      "rev",    "tac",  "split",
};

typedef struct sbx_plan {
    sbx_op ops[SBX_MAX_OPS];
    size_t n;
    char python_real[PATH_MAX]; /* e.g. /usr/bin/python3.11 */
    struct sock_fprog prog;     /* the seccomp filter */
    llmos_err err;              /* of building the plan; its message in errmsg */
    char errmsg[512];
} sbx_plan;

static sbx_plan plan;
static pthread_once_t plan_once = PTHREAD_ONCE_INIT;
static atomic_uint run_counter;

/* Host mount flags that an unprivileged remount must keep (the kernel locks them). */
static unsigned long host_locked_flags(const char *path)
{
    struct statvfs sv;
    if (statvfs(path, &sv) != 0)
        return 0;
    unsigned long f = 0;
    if (sv.f_flag & ST_RDONLY)
        f |= MS_RDONLY;
    if (sv.f_flag & ST_NOSUID)
        f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV)
        f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
        f |= MS_NOEXEC;
    return f;
}

static bool plan_has_dst(const char *dst)
{
    for (size_t i = 0; i < plan.n; i++)
        if (strcmp(plan.ops[i].dst, dst) == 0)
            return true;
    return false;
}

static sbx_op *plan_add(sbx_kind kind, const char *src, const char *inside)
{
    char dst[PATH_MAX];
    if (snprintf(dst, sizeof dst, SBX_BASE "%s", inside) >= (int)sizeof dst)
        return NULL;
    if (plan_has_dst(dst))
        return NULL;
    /* the directories above it first */
    for (char *s = strchr(dst + sizeof SBX_BASE, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        if (!plan_has_dst(dst) && plan.n < SBX_MAX_OPS) {
            sbx_op *d = &plan.ops[plan.n++];
            memset(d, 0, sizeof *d);
            d->kind = SBX_MKDIR;
            snprintf(d->dst, sizeof d->dst, "%s", dst);
        }
        *s = '/';
    }
    if (plan.n >= SBX_MAX_OPS)
        return NULL;
    sbx_op *op = &plan.ops[plan.n++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    snprintf(op->src, sizeof op->src, "%s", src ? src : "");
    snprintf(op->dst, sizeof op->dst, "%s", dst);
    return op;
}

/* Bind the host's `host` (followed to the real file or directory) at `inside`, read-only. */
static bool plan_bind(const char *host, const char *inside)
{
    char real[PATH_MAX];
    struct stat st;
    if (!realpath(host, real) || stat(real, &st) != 0)
        return false;
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return false;
    if (S_ISREG(st.st_mode) && (st.st_mode & (S_ISUID | S_ISGID)))
        return false; /* never a setuid or setgid program, nosuid or not */
    sbx_op *op = plan_add(SBX_BIND, real, inside);
    if (!op)
        return false;
    op->is_dir = S_ISDIR(st.st_mode);
    op->locked = host_locked_flags(real);
    return true;
}

/* A top-level host path: a symbolic link (usr-merged /bin, /lib, /lib64) is made again inside;
 * a directory (a system that is not usr-merged) is bound. */
static void plan_top(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n > 0) {
            target[n] = 0;
            plan_add(SBX_LINK, target, path);
        }
    } else if (S_ISDIR(st.st_mode)) {
        plan_bind(path, path);
    }
}

static const char *const sbx_lib_dirs[] = {
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
    "/lib/x86_64-linux-gnu",     "/lib/aarch64-linux-gnu",
};

static void plan_fail(llmos_err err, const char *msg)
{
    plan.err = err;
    snprintf(plan.errmsg, sizeof plan.errmsg, "%s", msg);
}

static bool build_seccomp(void);

static void plan_build(void)
{
    plan.n = 0;
    /* python3: the real binary under its own name, python3 and python as links to it, and
     * its standard library */
    char py[PATH_MAX];
    if (!realpath("/usr/bin/python3", py)) {
        plan_fail(LLMOS_ERR_UNSUPPORTED,
                  "sandbox: /usr/bin/python3 is missing (install Debian's python3-minimal; "
                  "scripts/deps does)");
        return;
    }
    snprintf(plan.python_real, sizeof plan.python_real, "%s", py);
    const char *pyname = strrchr(py, '/') + 1; /* python3.11 */
    plan_add(SBX_MKDIR, NULL, "/usr");
    plan_top("/bin");
    plan_top("/lib");
    plan_top("/lib64");
    char inside[PATH_MAX];
    snprintf(inside, sizeof inside, "/usr/bin/%s", pyname);
    plan_bind(py, inside);
    if (strcmp(pyname, "python3") != 0)
        plan_add(SBX_LINK, pyname, "/usr/bin/python3");
    plan_add(SBX_LINK, "python3", "/usr/bin/python");
    char stdlib[PATH_MAX];
    snprintf(stdlib, sizeof stdlib, "/usr/lib/%s", pyname);
    if (!plan_bind(stdlib, stdlib)) {
        plan_fail(LLMOS_ERR_UNSUPPORTED, "sandbox: python3's standard library is not where "
                                         "Debian puts it (/usr/lib/python3.X)");
        return;
    }
    /* sh (dash on Debian) under its own name, sh as a link */
    char sh[PATH_MAX];
    if (!realpath("/bin/sh", sh)) {
        plan_fail(LLMOS_ERR_UNSUPPORTED, "sandbox: /bin/sh is missing");
        return;
    }
    const char *shname = strrchr(sh, '/') + 1;
    snprintf(inside, sizeof inside, "/usr/bin/%s", shname);
    plan_bind(sh, inside);
    if (strcmp(shname, "sh") != 0)
        plan_add(SBX_LINK, shname, "/usr/bin/sh");
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(sbx_utilities); i++) {
        char host[PATH_MAX];
        snprintf(host, sizeof host, "/usr/bin/%s", sbx_utilities[i]);
        if (access(host, X_OK) != 0)
            snprintf(host, sizeof host, "/bin/%s", sbx_utilities[i]);
        snprintf(inside, sizeof inside, "/usr/bin/%s", sbx_utilities[i]);
        plan_bind(host, inside);
    }
    /* the libraries: the architecture's library directories (the loader is there or linked
     * from /usr/lib64) */
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(sbx_lib_dirs); i++) {
        struct stat st;
        if (lstat(sbx_lib_dirs[i], &st) == 0 && S_ISDIR(st.st_mode))
            plan_bind(sbx_lib_dirs[i], sbx_lib_dirs[i]);
    }
    plan_add(SBX_TEXT, "sandbox:x:1000:1000:llmos sandbox:/work:/bin/sh\n", "/etc/passwd");
    plan_add(SBX_TEXT, "sandbox:x:1000:\n", "/etc/group");
    plan_add(SBX_MKDIR, NULL, "/dev");
    static const char *const devs[] = {"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(devs); i++) {
        sbx_op *op = plan_add(SBX_DEV, devs[i], devs[i]);
        if (op)
            op->locked = host_locked_flags(devs[i]);
    }
    plan_add(SBX_MKDIR, NULL, "/dev/shm");
    plan_add(SBX_MKDIR, NULL, "/proc");
    plan_add(SBX_MKDIR, NULL, "/tmp");
    plan_add(SBX_MKDIR, NULL, "/work");
    if (plan.n >= SBX_MAX_OPS) {
        plan_fail(LLMOS_ERR_INTERNAL, "sandbox: the mount plan is longer than SBX_MAX_OPS");
        return;
    }
    if (!build_seccomp())
        return;
    plan.err = LLMOS_OK;
}

/* ---- the seccomp filter ------------------------------------------------------------------- */

/* What python3, sh and the utilities call. Everything else kills the process (SIGSYS): among
 * them ptrace, mount, umount2, pivot_root, chroot, unshare, setns, keyctl, add_key,
 * request_key, bpf, perf_event_open, userfaultfd, process_vm_readv/writev, io_uring_*,
 * init_module, kexec_load, reboot, swapon, open_by_handle_at, the new mount API, setuid and
 * setgid calls, personality, mknod. */
static const char *const sbx_allowed[] = {
    /* files */
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "open",
    "openat",
    "close",
    "close_range",
    "lseek",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "mkdir",
    "mkdirat",
    "rmdir",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "truncate",
    "ftruncate",
    "fallocate",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "umask",
    "dup",
    "dup2",
    "dup3",
    "pipe",
    "pipe2",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "fadvise64",
    "ioctl",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "copy_file_range",
    "sendfile",
    "splice",
    "tee",
    "memfd_create",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    /* memory */
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "msync",
    "mincore",
    /* signals */
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "sigaltstack",
    "kill",
    "tgkill",
    "tkill",
    "pause",
    /* processes (clone: see below) */
    "fork",
    "vfork",
    "execve",
    "wait4",
    "waitid",
    "exit",
    "exit_group",
    "getpid",
    "getppid",
    "gettid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "setsid",
    "setpgid",
    "getpgid",
    "getpgrp",
    "getsid",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "futex",
    "rseq",
    "arch_prctl",
    "prlimit64",
    "getrlimit",
    "setrlimit",
    "getrusage",
    "times",
    "sysinfo",
    "uname",
    "prctl",
    "capget",
    "sched_yield",
    "sched_getaffinity",
    "sched_getparam",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "getpriority",
    "setpriority",
    "getcpu",
    "membarrier",
    /* time */
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    "alarm",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_delete",
    "timer_getoverrun",
    /* waiting */
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "signalfd",
    "signalfd4",
    /* randomness */
    "getrandom",
    /* AF_UNIX sockets only (socket and socketpair are checked below); their calls */
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    "shutdown",
    "getsockname",
    "getpeername",
    "setsockopt",
    "getsockopt",
};

static bool build_seccomp(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx) {
        plan_fail(LLMOS_ERR_NOMEM, "sandbox: seccomp_init failed");
        return false;
    }
    int rc = 0;
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(sbx_allowed) && rc == 0; i++) {
        int nr = seccomp_syscall_resolve_name(sbx_allowed[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a system call of this architecture */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    /* clone: threads and fork, never a namespace */
    const uint64_t ns = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                        CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_NEWTIME;
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, ns, 0));
    /* clone3 passes its flags in memory, out of the filter's sight: ENOSYS makes the C library
     * fall back to clone, which is checked */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* sockets: AF_UNIX only (in its own network namespace: no abstract socket of the host) */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1,
                              SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
    if (rc != 0) {
        seccomp_release(ctx);
        plan_fail(LLMOS_ERR_INTERNAL, "sandbox: libseccomp refused a rule of the filter");
        return false;
    }
    /* the filter as BPF, through a memory file */
    int fd = memfd_create("llmos-seccomp", MFD_CLOEXEC);
    bool ok = fd >= 0 && seccomp_export_bpf(ctx, fd) == 0;
    seccomp_release(ctx);
    off_t size = ok ? lseek(fd, 0, SEEK_END) : 0;
    ok = ok && size > 0 && size % (off_t)sizeof(struct sock_filter) == 0 && size < (1 << 20);
    struct sock_filter *f = ok ? malloc((size_t)size) : NULL;
    ok = f && pread(fd, f, (size_t)size, 0) == size;
    if (fd >= 0)
        close(fd);
    if (!ok) {
        free(f);
        plan_fail(LLMOS_ERR_INTERNAL, "sandbox: exporting the seccomp filter failed");
        return false;
    }
    plan.prog.filter = f; /* kept for the life of the program */
    plan.prog.len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
    return true;
}

/* ---- the child ---------------------------------------------------------------------------- */

/* The steps the child reports a failure of (an index into step_names). */
enum {
    STEP_GO,
    STEP_PRIVATE,
    STEP_WORKSPACE,
    STEP_ROOTFS,
    STEP_PLAN,
    STEP_REMOUNT,
    STEP_TEXT,
    STEP_WORK,
    STEP_TMP,
    STEP_PIVOT,
    STEP_ROOT_RO,
    STEP_IDS,
    STEP_CAPS,
    STEP_LIMITS,
    STEP_SECCOMP,
    STEP_FORK,
};
static const char *const step_names[] = {
    "waiting for the parent",     "making mounts private",     "opening the workspace",
    "mounting the root tmpfs",    "making a path of the root", "making a bind mount read-only",
    "writing a file of the root", "mounting the workspace",    "mounting /tmp",
    "pivoting into the new root", "making the root read-only", "becoming uid 1000",
    "dropping capabilities",      "setting rlimits",           "loading the seccomp filter",
    "starting the program",
};

/* What the child gets (a copy of the parent's memory: everything is ready). */
typedef struct sbx_child {
    int fd_in, fd_out, fd_err, fd_sync, fd_status;
    bool root_mode;
    const char *workspace;
    unsigned long work_locked;
    const char *const *argv;
    char *const *envp;
    struct rlimit lim_cpu, lim_as, lim_nproc, lim_fsize, lim_nofile;
} sbx_child;

/* The status pipe's messages: a kind byte and two ints. */
typedef struct sbx_msg {
    int kind; /* 'E' failed set-up (a = step, b = errno); 'S' the program's wait status (a);
                 'P' no /proc of its own (b = errno) */
    int a, b;
} sbx_msg;

static void child_send(int fd, int kind, int a, int b)
{
    sbx_msg m = {kind, a, b};
    ssize_t r = write(fd, &m, sizeof m);
    (void)r;
}

static _Noreturn void child_fail(int fd, int step)
{
    child_send(fd, 'E', step, errno);
    _exit(126);
}

static int child_bind_ro(const sbx_op *op, int fd_status)
{
    if (op->is_dir) {
        if (mkdir(op->dst, 0755) != 0 && errno != EEXIST)
            child_fail(fd_status, STEP_PLAN);
    } else {
        int f = open(op->dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (f < 0)
            child_fail(fd_status, STEP_PLAN);
        close(f);
    }
    if (mount(op->src, op->dst, NULL, MS_BIND | MS_REC, NULL) != 0)
        child_fail(fd_status, STEP_PLAN);
    unsigned long fl = MS_REMOUNT | MS_BIND | MS_NOSUID | op->locked;
    fl |= op->kind == SBX_DEV ? MS_NOEXEC : (MS_RDONLY | MS_NODEV);
    if (mount(NULL, op->dst, NULL, fl, NULL) != 0)
        child_fail(fd_status, STEP_REMOUNT);
    return 0;
}

/* Where this copy's command line and environment are (arg_start, arg_end, env_start, env_end:
 * fields 48 to 51 of /proc/self/stat) into r[4]; zeros when unknown. Raw reads and parsing:
 * no allocator here. */
static void child_args_range(unsigned long long r[4])
{
    memset(r, 0, 4 * sizeof *r);
    char st[2048];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, st, sizeof st - 1);
    close(fd);
    if (n <= 0)
        return;
    st[n] = 0;
    char *p = strrchr(st, ')'); /* the command name may hold spaces */
    if (!p)
        return;
    int field = 2;
    for (p++; *p && field < 51;) {
        while (*p == ' ')
            p++;
        field++;
        unsigned long long x = 0;
        while (*p >= '0' && *p <= '9')
            x = x * 10 + (unsigned long long)(*p++ - '0');
        while (*p && *p != ' ')
            p++;
        if (field >= 48)
            r[field - 48] = x;
    }
    if (field != 51)
        memset(r, 0, 4 * sizeof *r);
}

/* Blank them: the init of the namespace is a copy of llmos, and /proc/1/cmdline is readable
 * inside (its environ and memory are not: it is not dumpable). */
static void child_blank_args(const unsigned long long r[4])
{
    for (int i = 0; i < 4; i += 2)
        if (r[i + 1] > r[i] && r[i + 1] - r[i] < (1u << 20))
            memset((void *)(uintptr_t)r[i], 0, (size_t)(r[i + 1] - r[i]));
}

/* The program, in a vfork of init: exec it in /work. */
static int child_program(void *arg)
{
    const sbx_child *c = arg;
    close(4);
    if (chdir("/work") == 0)
        execve(c->argv[0], (char *const *)c->argv, c->envp);
    static const char msg[] = "sandbox: cannot start the program\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(127);
}

static int child_main(void *arg)
{
    const sbx_child *c = arg;
    unsigned long long args[4];
    child_args_range(args);
    /* stdio and the two pipes at fixed numbers, everything else closed */
    int in = fcntl(c->fd_in, F_DUPFD, 10), out = fcntl(c->fd_out, F_DUPFD, 10),
        err = fcntl(c->fd_err, F_DUPFD, 10), sync = fcntl(c->fd_sync, F_DUPFD, 10),
        status = fcntl(c->fd_status, F_DUPFD, 10);
    if (in < 0 || out < 0 || err < 0 || sync < 0 || status < 0 || dup2(in, 0) < 0 ||
        dup2(out, 1) < 0 || dup2(err, 2) < 0 || dup2(sync, 3) < 0 || dup2(status, 4) < 0)
        _exit(125);
    if (syscall(SYS_close_range, 5, ~0U, 0) != 0)
        for (int fd = 5; fd < 1024; fd++)
            close(fd);
    fcntl(4, F_SETFD, FD_CLOEXEC);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char go;
    if (read(3, &go, 1) != 1)
        child_fail(4, STEP_GO); /* the parent gave up */
    close(3);
    prctl(PR_SET_NAME, "sandbox-init", 0, 0, 0);

    /* the new root */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        child_fail(4, STEP_PRIVATE);
    int ws = open(c->workspace, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ws < 0)
        child_fail(4, STEP_WORKSPACE);
    /* uid and gid 1000 from here on, so that what it makes in its mounts has an owner of its
     * namespace (as root's child it is still uid 0 outside, which the namespace cannot show:
     * EOVERFLOW). It keeps its capabilities in the namespace until they are dropped below: the
     * kernel clears them on a change of uid only when the old one was 0 inside. */
    /* (raw system calls: the C library's setresuid of a threaded program signals every
     * thread to change with it, and the threads of the parent are not in this copy: it would
     * wait for them forever) */
    if (c->root_mode && syscall(SYS_setgroups, 0, NULL) != 0)
        child_fail(4, STEP_IDS);
    if (syscall(SYS_setresgid, SANDBOX_INSIDE_ID, SANDBOX_INSIDE_ID, SANDBOX_INSIDE_ID) != 0 ||
        syscall(SYS_setresuid, SANDBOX_INSIDE_ID, SANDBOX_INSIDE_ID, SANDBOX_INSIDE_ID) != 0)
        child_fail(4, STEP_IDS);
    if (mount("llmos-sandbox", SBX_BASE, "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0755") != 0)
        child_fail(4, STEP_ROOTFS);
    for (size_t i = 0; i < plan.n; i++) {
        const sbx_op *op = &plan.ops[i];
        switch (op->kind) {
        case SBX_MKDIR:
            if (mkdir(op->dst, 0755) != 0 && errno != EEXIST)
                child_fail(4, STEP_PLAN);
            break;
        case SBX_LINK:
            if (symlink(op->src, op->dst) != 0)
                child_fail(4, STEP_PLAN);
            break;
        case SBX_BIND:
        case SBX_DEV: child_bind_ro(op, 4); break;
        case SBX_TEXT: {
            int f = open(op->dst, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
            size_t len = strlen(op->src);
            if (f < 0 || write(f, op->src, len) != (ssize_t)len)
                child_fail(4, STEP_TEXT);
            close(f);
            break;
        }
        }
    }
    /* the workspace, through the descriptor opened before /tmp was covered */
    char wspath[64] = "/proc/self/fd/";
    {
        char digits[16];
        int n = 0, v = ws;
        do {
            digits[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v && n < 15);
        size_t at = strlen(wspath);
        while (n)
            wspath[at++] = digits[--n];
        wspath[at] = 0;
    }
    if (mount(wspath, SBX_BASE "/work", NULL, MS_BIND, NULL) != 0 ||
        mount(NULL, SBX_BASE "/work", NULL,
              MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | c->work_locked, NULL) != 0)
        child_fail(4, STEP_WORK);
    close(ws);
    if (mount("tmpfs", SBX_BASE "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, SBX_TMP_SIZE ",mode=1777") !=
        0)
        child_fail(4, STEP_TMP);
    if (mount("tmpfs", SBX_BASE "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              SBX_TMP_SIZE ",mode=1777") != 0) /* POSIX semaphores (multiprocessing) */
        child_fail(4, STEP_TMP);
    if (mount("proc", SBX_BASE "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        child_send(4, 'P', 0, errno); /* a container may forbid it: python runs without */
    if (chdir(SBX_BASE) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 ||
        umount2(".", MNT_DETACH) != 0 || chdir("/") != 0)
        child_fail(4, STEP_PIVOT);
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
        child_fail(4, STEP_ROOT_RO);
    sethostname("sandbox", 7);

    /* no capabilities, and no way to get any back */
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            child_fail(4, STEP_CAPS);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &hdr, data) != 0 ||
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        child_fail(4, STEP_CAPS);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* cleared by the change of ids */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        child_fail(4, STEP_CAPS);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    const struct rlimit core = {0, 0};
    if (setrlimit(RLIMIT_CPU, &c->lim_cpu) != 0 || setrlimit(RLIMIT_AS, &c->lim_as) != 0 ||
        setrlimit(RLIMIT_NPROC, &c->lim_nproc) != 0 ||
        setrlimit(RLIMIT_FSIZE, &c->lim_fsize) != 0 ||
        setrlimit(RLIMIT_NOFILE, &c->lim_nofile) != 0 || setrlimit(RLIMIT_CORE, &core) != 0)
        child_fail(4, STEP_LIMITS);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &plan.prog) != 0)
        child_fail(4, STEP_SECCOMP);

    /* init of the namespace: start the program, wait for it, report, leave (the kernel then
     * kills whatever else runs in the namespace) */
    /* llmos's command line goes before the program can look (its own argv is a copy made by
     * sandbox_exec, elsewhere); then the program starts in a vfork, which copies no page
     * tables (init is a copy of llmos, which may map gigabytes of weights) */
    child_blank_args(args);
    static char prog_stack[64 * 1024] __attribute__((aligned(16)));
    pid_t pid = clone(child_program, prog_stack + sizeof prog_stack,
                      CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)c);
    if (pid < 0)
        child_fail(4, STEP_FORK);
    close(0);
    close(1);
    close(2);
    for (;;) {
        int st;
        pid_t r = (pid_t)syscall(SYS_wait4, -1, &st, 0, NULL);
        if (r == pid) {
            child_send(4, 'S', st, 0);
            _exit(0);
        }
        if (r < 0 && errno != EINTR)
            _exit(124);
    }
}

/* ---- the parent --------------------------------------------------------------------------- */

/* clone3's arguments (linux/sched.h's struct clone_args, which does not mix with sched.h). */
typedef struct sbx_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
} sbx_clone_args;
#define SBX_CLONE_INTO_CGROUP 0x200000000ULL

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t len = strlen(text);
    bool ok = write(fd, text, len) == (ssize_t)len;
    return close(fd) == 0 && ok;
}

static void read_small(const char *path, char *out, size_t size)
{
    out[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    out[n > 0 ? n : 0] = 0;
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = 0;
}

/* Why the kernel refused a user namespace, naming the sysctls that decide it. */
static llmos_err userns_refused(int e)
{
    char unpriv[32], apparmor[32], maxns[32];
    read_small("/proc/sys/kernel/unprivileged_userns_clone", unpriv, sizeof unpriv);
    read_small("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", apparmor, sizeof apparmor);
    read_small("/proc/sys/user/max_user_namespaces", maxns, sizeof maxns);
    char why[256] = "";
    if (strcmp(maxns, "0") == 0)
        snprintf(why, sizeof why,
                 "user.max_user_namespaces is 0 (sysctl -w "
                 "user.max_user_namespaces=10000)");
    else if (strcmp(unpriv, "0") == 0)
        snprintf(why, sizeof why,
                 "kernel.unprivileged_userns_clone is 0 (sysctl -w "
                 "kernel.unprivileged_userns_clone=1)");
    else if (strcmp(apparmor, "1") == 0)
        snprintf(why, sizeof why,
                 "kernel.apparmor_restrict_unprivileged_userns is 1 (sysctl -w "
                 "kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor "
                 "profile for llmos allowing userns)");
    else
        snprintf(why, sizeof why,
                 "check user.max_user_namespaces (now %s), "
                 "kernel.unprivileged_userns_clone and seccomp or container "
                 "policies that forbid unshare/clone",
                 maxns[0] ? maxns : "unknown");
    return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                      "sandbox: the kernel refused to make namespaces for the sandbox (%s): %s",
                      strerror(e), why);
}

/* ---- the cgroup -------------------------------------------------------------------------- */

typedef struct sbx_cgroup {
    char path[PATH_MAX]; /* "" when none */
    int fd;              /* the directory, for clone3's CLONE_INTO_CGROUP; -1 when none */
} sbx_cgroup;

/* Move pid into the cgroup by writing cgroup.procs: the slow way (the kernel waits for an RCU
 * grace period, milliseconds), when clone3 could not start the child there. False, with the
 * cgroup removed and notes saying why, when it fails. */
static bool cgroup_enter(sbx_cgroup *cg, pid_t pid, char *notes, size_t size)
{
    char file[PATH_MAX + 16], val[32];
    snprintf(file, sizeof file, "%s/cgroup.procs", cg->path);
    snprintf(val, sizeof val, "%d", (int)pid);
    if (write_file(file, val))
        return true;
    snprintf(notes, size, "no cgroup: moving the run into %.160s failed (%s)", cg->path,
             strerror(errno));
    rmdir(cg->path);
    cg->path[0] = 0;
    return false;
}

/* A cgroup v2 of its own under llmos's, with pids.max and memory.max where the controllers are
 * there; notes says what came of it. */
static void cgroup_make(sbx_cgroup *cg, const sandbox_limits *lim, char *notes, size_t size)
{
    cg->path[0] = 0;
    cg->fd = -1;
    char mnt[PATH_MAX] = "", own[PATH_MAX] = "", line[4096];
    FILE *f = fopen("/proc/self/mountinfo", "re");
    while (f && fgets(line, sizeof line, f)) {
        char *sep = strstr(line, " - cgroup2 ");
        if (!sep)
            continue;
        char mp[PATH_MAX];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1) {
            snprintf(mnt, sizeof mnt, "%s", mp);
            break;
        }
    }
    if (f)
        fclose(f);
    f = fopen("/proc/self/cgroup", "re");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(own, sizeof own, "%s", line + 3);
        }
    if (f)
        fclose(f);
    if (!mnt[0]) {
        snprintf(notes, size, "no cgroup: no cgroup v2 is mounted");
        return;
    }
    char dir[2 * PATH_MAX];
    snprintf(dir, sizeof dir, "%s%s", mnt, strcmp(own, "/") == 0 ? "" : own);
    char path[PATH_MAX];
    if (strlen(dir) > PATH_MAX - 64 ||
        snprintf(path, sizeof path, "%.*s/llmos-sandbox-%d-%u", PATH_MAX - 64, dir, (int)getpid(),
                 atomic_fetch_add(&run_counter, 1)) >= (int)sizeof path) {
        snprintf(notes, size, "no cgroup: its path is too long");
        return;
    }
    if (mkdir(path, 0755) != 0) {
        snprintf(notes, size, "no cgroup: %.160s is not writable (%s)", dir, strerror(errno));
        return;
    }
    /* the controllers the parent hands down; ask for pids and memory where they exist */
    char avail[512], ctl[2 * PATH_MAX + 32];
    snprintf(ctl, sizeof ctl, "%s/cgroup.controllers", dir);
    read_small(ctl, avail, sizeof avail);
    snprintf(ctl, sizeof ctl, "%s/cgroup.subtree_control", dir);
    if (strstr(avail, "pids"))
        (void)write_file(ctl, "+pids");
    if (strstr(avail, "memory"))
        (void)write_file(ctl, "+memory");
    char file[PATH_MAX + 32], val[64];
    bool pids = false, mem = false;
    snprintf(file, sizeof file, "%s/pids.max", path);
    snprintf(val, sizeof val, "%d", lim->processes);
    pids = access(file, W_OK) == 0 && write_file(file, val);
    snprintf(file, sizeof file, "%s/memory.max", path);
    snprintf(val, sizeof val, "%zu", lim->memory_bytes);
    mem = access(file, W_OK) == 0 && write_file(file, val);
    if (mem) {
        snprintf(file, sizeof file, "%s/memory.swap.max", path);
        (void)write_file(file, "0");
    }
    cg->fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cg->fd < 0) {
        snprintf(notes, size, "no cgroup: opening %.160s failed (%s)", path, strerror(errno));
        rmdir(path);
        return;
    }
    snprintf(cg->path, sizeof cg->path, "%s", path);
    snprintf(notes, size, "cgroup %s%s%s", strrchr(path, '/') + 1,
             pids ? " with pids.max" : " (no pids controller)",
             mem ? " and memory.max" : " (no memory controller)");
}

static void cgroup_kill(const sbx_cgroup *cg)
{
    if (!cg->path[0])
        return;
    char file[PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/cgroup.kill", cg->path);
    (void)write_file(file, "1");
}

static void cgroup_remove(sbx_cgroup *cg)
{
    if (cg->fd >= 0)
        close(cg->fd);
    cg->fd = -1;
    if (!cg->path[0])
        return;
    /* the last process leaves the cgroup a moment after it is reaped */
    for (int i = 0; i < 100 && rmdir(cg->path) != 0 && errno == EBUSY; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cg->path[0] = 0;
}

/* ---- sandbox_exec -------------------------------------------------------------------------- */

static void plan_once_fn(void)
{
    plan_build();
}

void sandbox_owner(uid_t *uid, gid_t *gid)
{
    bool root = geteuid() == 0;
    *uid = root ? SBX_NOBODY : geteuid();
    *gid = root ? SBX_NOBODY : getegid();
}

void sandbox_result_free(sandbox_result *r)
{
    if (!r)
        return;
    buf_free(&r->out);
    buf_free(&r->err);
    memset(r, 0, sizeof *r);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Read what fd has into b, keeping at most cap bytes; false at EOF or error. */
static bool drain(int fd, llmos_buf *b, size_t cap, bool *truncated)
{
    char chunk[16384];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0)
        return false;
    size_t keep = b->len < cap ? cap - b->len : 0;
    if ((size_t)n < keep)
        keep = (size_t)n;
    if (keep && buf_append(b, chunk, keep) != LLMOS_OK)
        keep = 0;
    if (keep < (size_t)n)
        *truncated = true;
    return true;
}

llmos_err sandbox_exec(const sandbox_spec *spec, sandbox_result *out)
{
    if (!out)
        return llmos_fail(LLMOS_ERR_INVALID, "sandbox_exec: no result");
    memset(out, 0, sizeof *out);
    if (!spec || !spec->argv || !spec->argv[0] || spec->argv[0][0] != '/' || !spec->workspace)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "sandbox_exec: needs argv (an absolute path first) and a workspace");
    pthread_once(&plan_once, plan_once_fn);
    if (plan.err)
        return llmos_fail(plan.err, "%s", plan.errmsg);
    struct stat wst;
    if (stat(spec->workspace, &wst) != 0 || !S_ISDIR(wst.st_mode))
        return llmos_fail(LLMOS_ERR_IO, "sandbox: the workspace %s is not a directory",
                          spec->workspace);

    sandbox_limits lim = spec->limits;
    if (lim.wall_s <= 0)
        lim.wall_s = 10;
    if (lim.cpu_s <= 0)
        lim.cpu_s = 10;
    if (!lim.memory_bytes)
        lim.memory_bytes = (size_t)1 << 30;
    if (lim.processes <= 0)
        lim.processes = 64;
    if (!lim.file_bytes)
        lim.file_bytes = (size_t)64 << 20;
    if (lim.open_files <= 0)
        lim.open_files = 256;
    if (!lim.output_bytes)
        lim.output_bytes = 64 << 10;

    static char *const envp[] = {
        "PATH=/usr/bin:/bin",        "HOME=/work",   "TMPDIR=/tmp", "LANG=C.UTF-8",
        "PYTHONDONTWRITEBYTECODE=1", "USER=sandbox", NULL};
    /* argv copied to the heap: init blanks llmos's own command line, where argv may lie */
    size_t argc = 0, bytes = 0;
    while (spec->argv[argc])
        bytes += strlen(spec->argv[argc++]) + 1;
    char **argv = malloc((argc + 1) * sizeof *argv + bytes);
    if (!argv)
        return llmos_fail(LLMOS_ERR_NOMEM, "sandbox: no memory");
    char *at = (char *)(argv + argc + 1);
    for (size_t i = 0; i < argc; i++) {
        size_t l = strlen(spec->argv[i]) + 1;
        argv[i] = memcpy(at, spec->argv[i], l);
        at += l;
    }
    argv[argc] = NULL;
    sbx_child c = {.root_mode = geteuid() == 0,
                   .workspace = spec->workspace,
                   .work_locked = host_locked_flags(spec->workspace) & ~MS_RDONLY,
                   .argv = (const char *const *)argv,
                   .envp = envp,
                   .lim_cpu = {(rlim_t)lim.cpu_s, (rlim_t)lim.cpu_s + 1},
                   .lim_as = {lim.memory_bytes, lim.memory_bytes},
                   .lim_nproc = {(rlim_t)lim.processes, (rlim_t)lim.processes},
                   .lim_fsize = {lim.file_bytes, lim.file_bytes},
                   .lim_nofile = {(rlim_t)lim.open_files, (rlim_t)lim.open_files}};
    int in[2] = {-1, -1}, po[2] = {-1, -1}, pe[2] = {-1, -1}, ps[2] = {-1, -1}, pst[2] = {-1, -1},
        pidfd = -1;
    llmos_err err = LLMOS_OK;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0 || pipe2(po, O_CLOEXEC) != 0 ||
        pipe2(pe, O_CLOEXEC) != 0 || pipe2(ps, O_CLOEXEC) != 0 || pipe2(pst, O_CLOEXEC) != 0) {
        err = llmos_fail(LLMOS_ERR_IO, "sandbox: pipes: %s", strerror(errno));
        goto done_fds;
    }
    c.fd_in = in[1];
    c.fd_out = po[1];
    c.fd_err = pe[1];
    c.fd_sync = ps[0];
    c.fd_status = pst[1];

    char *stack = mmap(NULL, SBX_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "sandbox: no memory for the child's stack");
        goto done_fds;
    }
    double t0 = now_s();
    sbx_cgroup cg = {.fd = -1};
    cgroup_make(&cg, &lim, out->notes, sizeof out->notes);
    const uint64_t ns = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                        CLONE_NEWUTS | CLONE_NEWCGROUP;
    pid_t pid = -1;
    if (cg.fd >= 0) {
        /* clone3 starts the child in its cgroup; moving it there afterwards costs an RCU
         * grace period (ms) */
        sbx_clone_args ca = {.flags = ns | CLONE_PIDFD | SBX_CLONE_INTO_CGROUP,
                             .pidfd = (uint64_t)(uintptr_t)&pidfd,
                             .exit_signal = SIGCHLD,
                             .cgroup = (uint64_t)cg.fd};
        pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0)
            _exit(child_main(&c)); /* a fork: this is a copy of this thread's stack */
    }
    bool in_cgroup = pid > 0;
    if (pid < 0)
        pid = clone(child_main, stack + SBX_STACK, (int)ns | CLONE_PIDFD | SIGCHLD, &c, &pidfd);
    int clone_errno = errno;
    munmap(stack, SBX_STACK);
    if (pid < 0) {
        cgroup_remove(&cg);
        err = userns_refused(clone_errno);
        goto done_fds;
    }
    close_fd(&in[1]);
    close_fd(&po[1]);
    close_fd(&pe[1]);
    close_fd(&ps[0]);
    close_fd(&pst[1]);

    /* ids: 1000 inside is us outside (nobody when we are root) */
    char map[64], path[64];
    uid_t ouid;
    gid_t ogid;
    sandbox_owner(&ouid, &ogid);
    bool mapped = true;
    if (!c.root_mode) {
        snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
        mapped = write_file(path, "deny");
    }
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    snprintf(map, sizeof map, "%d %u 1\n", SANDBOX_INSIDE_ID, (unsigned)ouid);
    mapped = mapped && write_file(path, map);
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    snprintf(map, sizeof map, "%d %u 1\n", SANDBOX_INSIDE_ID, (unsigned)ogid);
    mapped = mapped && write_file(path, map);
    int map_errno = errno;
    if (mapped && cg.path[0] && !in_cgroup)
        (void)cgroup_enter(&cg, pid, out->notes, sizeof out->notes);
    if (!mapped || write(ps[1], "g", 1) != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cgroup_remove(&cg);
        err = mapped ? llmos_fail(LLMOS_ERR_IO, "sandbox: the child went away before it started")
              : map_errno == EACCES || map_errno == EPERM
                  ? llmos_fail(LLMOS_ERR_UNSUPPORTED,
                               "sandbox: writing the child's uid_map was refused (%s); a process "
                               "that is not dumpable (prctl PR_SET_DUMPABLE 0) cannot map ids "
                               "for its children",
                               strerror(map_errno))
                  : userns_refused(map_errno);
        goto done_fds;
    }
    close_fd(&ps[1]);

    /* feed, read, wait, or kill at the deadline */
    fcntl(in[0], F_SETFL, O_NONBLOCK);
    size_t fed = 0;
    if (!spec->stdin_data || !spec->stdin_len)
        shutdown(in[0], SHUT_WR);
    double deadline = t0 + lim.wall_s;
    bool exited = false, killed = false, status_seen = false;
    sbx_msg msg = {0};
    size_t msg_have = 0;
    bool proc_missing = false;
    int setup_step = -1, setup_errno = 0, wait_status = 0;
    while (!exited || po[0] >= 0 || pe[0] >= 0 || pst[0] >= 0) {
        struct pollfd pf[5];
        int n = 0, i_in = -1, i_out = -1, i_err = -1, i_st = -1, i_pid = -1;
        if (in[0] >= 0 && spec->stdin_data && fed < spec->stdin_len)
            pf[i_in = n++] = (struct pollfd){in[0], POLLOUT, 0};
        if (po[0] >= 0)
            pf[i_out = n++] = (struct pollfd){po[0], POLLIN, 0};
        if (pe[0] >= 0)
            pf[i_err = n++] = (struct pollfd){pe[0], POLLIN, 0};
        if (pst[0] >= 0)
            pf[i_st = n++] = (struct pollfd){pst[0], POLLIN, 0};
        if (!exited)
            pf[i_pid = n++] = (struct pollfd){pidfd, POLLIN, 0};
        double left = deadline - now_s();
        int ms = killed ? 1000 : left <= 0 ? 0 : (int)(left * 1000) + 1;
        int r = poll(pf, (nfds_t)n, ms);
        if (r < 0 && errno != EINTR) {
            err = llmos_fail(LLMOS_ERR_IO, "sandbox: poll: %s", strerror(errno));
            kill(pid, SIGKILL);
            cgroup_kill(&cg);
            waitpid(pid, NULL, 0);
            break;
        }
        if (!killed && now_s() >= deadline) {
            out->timed_out = true;
            killed = true;
            syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
            cgroup_kill(&cg);
            continue;
        }
        if (r == 0 && killed) /* the dead hold no pipe: what still does? give up on it */
            break;
        if (r <= 0)
            continue;
        if (i_in >= 0 && (pf[i_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(in[0], spec->stdin_data + fed, spec->stdin_len - fed,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                fed += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                fed = spec->stdin_len; /* it closed its stdin: the rest is not wanted */
            if (fed >= spec->stdin_len)
                shutdown(in[0], SHUT_WR);
        }
        if (i_out >= 0 && (pf[i_out].revents & (POLLIN | POLLHUP | POLLERR)) &&
            !drain(po[0], &out->out, lim.output_bytes, &out->out_truncated))
            close_fd(&po[0]);
        if (i_err >= 0 && (pf[i_err].revents & (POLLIN | POLLHUP | POLLERR)) &&
            !drain(pe[0], &out->err, lim.output_bytes, &out->err_truncated))
            close_fd(&pe[0]);
        if (i_st >= 0 && (pf[i_st].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t g = read(pst[0], (char *)&msg + msg_have, sizeof msg - msg_have);
            if (g <= 0 && !(g < 0 && errno == EINTR)) {
                close_fd(&pst[0]);
            } else if (g > 0 && (msg_have += (size_t)g) == sizeof msg) {
                msg_have = 0;
                if (msg.kind == 'E') {
                    setup_step = msg.a;
                    setup_errno = msg.b;
                } else if (msg.kind == 'S') {
                    status_seen = true;
                    wait_status = msg.a;
                } else if (msg.kind == 'P') {
                    proc_missing = true;
                }
            }
        }
        if (i_pid >= 0 && (pf[i_pid].revents & POLLIN)) {
            int st;
            if (waitpid(pid, &st, 0) == pid) {
                exited = true;
                if (!status_seen)
                    wait_status = st; /* init itself ended (killed) */
            }
        }
    }
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    out->wall_s = now_s() - t0;
    cgroup_remove(&cg);
    if (proc_missing) {
        size_t l = strlen(out->notes);
        snprintf(out->notes + l, sizeof out->notes - l, "%sno /proc (the kernel refused one)",
                 l ? "; " : "");
    }
    if (!err && setup_step >= 0) {
        const char *what =
            setup_step < (int)LLMOS_ARRAY_LEN(step_names) ? step_names[setup_step] : "setting up";
        err = llmos_fail(setup_errno == EPERM || setup_errno == EACCES ? LLMOS_ERR_UNSUPPORTED
                                                                       : LLMOS_ERR_IO,
                         "sandbox: the set-up failed %s: %s", what, strerror(setup_errno));
    }
    if (!err) {
        if (out->timed_out && !status_seen) {
            out->exit_code = -1;
            out->signal = SIGKILL;
        } else if (WIFEXITED(wait_status)) {
            out->exit_code = WEXITSTATUS(wait_status);
        } else if (WIFSIGNALED(wait_status)) {
            out->exit_code = -1;
            out->signal = WTERMSIG(wait_status);
        }
    }
done_fds:
    close_fd(&in[0]);
    close_fd(&in[1]);
    close_fd(&po[0]);
    close_fd(&po[1]);
    close_fd(&pe[0]);
    close_fd(&pe[1]);
    close_fd(&ps[0]);
    close_fd(&ps[1]);
    close_fd(&pst[0]);
    close_fd(&pst[1]);
    close_fd(&pidfd);
    free(argv);
    return err;
}

llmos_err sandbox_probe(void)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static int known; /* 0 not yet, 1 works, 2 does not */
    static llmos_err why;
    static char msg[512];
    pthread_mutex_lock(&mu);
    if (!known) {
        char dir[] = "/tmp/llmos-sandbox-probe-XXXXXX";
        llmos_err err;
        if (!mkdtemp(dir)) {
            err = llmos_fail(LLMOS_ERR_IO, "sandbox: cannot make a directory in /tmp: %s",
                             strerror(errno));
        } else {
            uid_t u;
            gid_t g;
            sandbox_owner(&u, &g);
            if (chown(dir, u, g) != 0) {
                /* an unprivileged caller owns it already */
            }
            const char *argv[] = {SANDBOX_SH, "-c", "exit 7", NULL};
            sandbox_spec s = {.argv = argv, .workspace = dir, .limits = {.wall_s = 10}};
            sandbox_result r;
            err = sandbox_exec(&s, &r);
            if (!err && r.exit_code != 7)
                err = llmos_fail(LLMOS_ERR_UNSUPPORTED,
                                 "sandbox: a trial run of sh ended with status %d, signal %d: "
                                 "%.200s",
                                 r.exit_code, r.signal, r.err.data ? r.err.data : "");
            sandbox_result_free(&r);
            rmdir(dir);
        }
        /* a refusal of the kernel is remembered; a passing failure (no memory, no pipe, a
         * full process table) is tried again next time */
        known = !err ? 1 : err == LLMOS_ERR_UNSUPPORTED ? 2 : 0;
        why = err;
        snprintf(msg, sizeof msg, "%s", err ? llmos_errmsg() : "");
    }
    llmos_err err = !why ? LLMOS_OK : llmos_fail(why, "%s", msg);
    pthread_mutex_unlock(&mu);
    return err;
}
