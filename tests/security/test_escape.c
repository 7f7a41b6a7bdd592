/*
 * test_escape.c - the escape and abuse suite of the sandbox (src/tools/sandbox.c) and of the
 * files tool (src/tools/files.c): programs that try to read secrets outside their workspace
 * (/etc/shadow, the user's store and key file, another process's workspace, the parent
 * through /proc), write outside it, open sockets of any family, exhaust processes, memory,
 * CPU, disk, files and output, gain privileges (ptrace, mount, unshare, setuid programs,
 * keyctl, bpf, ...), and paths, symbolic links, hard links and link races that try to lead
 * the files tool out of the workspace.
 *
 * Every attempt must fail, and the test process must survive them all. What counts as an
 * escape is checked from outside as well as inside: the canaries (random strings in the
 * store, the key file, the other workspace, a file beside the home, this process's
 * environment) must not appear in anything a run or the files tool returns, and after every
 * attempt the files outside the workspace must be as they were, with nothing added beside
 * them. The output lists each attempt and what stopped it, and the count of escapes (0) out
 * of the attempts (at least 40).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "kernel/kernel_internal.h"
#include "llmos/json.h"
#include "llmos/memory.h"
#include "llmos/sandbox.h"
#include "llmos/tools.h"
#include "testutil.h"

/* ---- the scene ---------------------------------------------------------------------------- */

static char abstract_name[64]; /* the host's abstract unix socket: llmos-escape-<pid> */
static char base[256], sockdir[256], home[320], wsroot[384], ws_a[420], ws_b[420];
static char c_store[40], c_key[40], c_other[40], c_out[40], c_env[40];
static char shadow_head[64]; /* the host's /etc/shadow's first line start, "" if unreadable */
static int attempts, escapes;
static memory *mem;
static kernel *k;

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void canary(char *out, size_t size, const char *what)
{
    unsigned char r[8];
    int fd = open("/dev/urandom", O_RDONLY);
    assert_true(fd >= 0 && read(fd, r, sizeof r) == (ssize_t)sizeof r);
    close(fd);
    snprintf(out, size, "CANARY-%s-%02x%02x%02x%02x%02x%02x", what, r[0], r[1], r[2], r[3], r[4],
             r[5]);
}

static int setup(void **state)
{
    (void)state;
    if (!tu_mkdtemp("escape", base, sizeof base) || !tu_mkdtemp("escsock", sockdir, sizeof sockdir))
        return -1;
    snprintf(home, sizeof home, "%s/home", base);
    snprintf(wsroot, sizeof wsroot, "%s/workspaces", home);
    snprintf(ws_a, sizeof ws_a, "%s/alice/1", wsroot);
    snprintf(ws_b, sizeof ws_b, "%s/alice/2", wsroot);
    snprintf(abstract_name, sizeof abstract_name, "llmos-escape-%d", (int)getpid());
    canary(c_store, sizeof c_store, "store");
    canary(c_key, sizeof c_key, "key");
    canary(c_other, sizeof c_other, "other");
    canary(c_out, sizeof c_out, "outside");
    canary(c_env, sizeof c_env, "env");
    setenv("LLMOS_ESCAPE_CANARY", c_env, 1);
    if (mkdir(home, 0700) != 0 || llmos_file_mkdirs(ws_a, 0700) || llmos_file_mkdirs(ws_b, 0700))
        return -1;
    uid_t u;
    gid_t g;
    sandbox_owner(&u, &g);
    if ((chown(ws_a, u, g) != 0 || chown(ws_b, u, g) != 0) && geteuid() == 0)
        return -1;
    char p[600];
    snprintf(p, sizeof p, "%s/store", home);
    write_text(p, c_store);
    snprintf(p, sizeof p, "%s/key", home);
    write_text(p, c_key);
    snprintf(p, sizeof p, "%s/secret.txt", ws_b);
    write_text(p, c_other);
    snprintf(p, sizeof p, "%s/outside.txt", base);
    write_text(p, c_out);
    FILE *f = fopen("/etc/shadow", "r");
    if (f) {
        if (fgets(shadow_head, sizeof shadow_head, f)) {
            char *colon = strchr(shadow_head, ':');
            colon = colon ? strchr(colon + 1, ':') : NULL; /* "root:<hash>" */
            if (colon)
                *colon = 0;
        }
        fclose(f);
    }
    if (memory_open_ephemeral(&mem))
        return -1;
    kernel_config kc = {.st = memory_store(mem), .workspace_dir = wsroot};
    return kernel_new(&kc, &k) == LLMOS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kernel_free(k);
    memory_close(mem);
    tu_rmrf(base);
    tu_rmrf(sockdir);
    return 0;
}

static void need_sandbox(void)
{
    llmos_err err = sandbox_probe();
    if (err && geteuid() != 0 && err == LLMOS_ERR_UNSUPPORTED)
        tu_skip("%s", llmos_errmsg());
    if (err)
        fail_msg("sandbox_probe: %s", llmos_errmsg());
}

/* ---- what counts as an escape -------------------------------------------------------------- */

/* Does text hold a secret it should never see? Names it in why. */
static bool leaks(const char *text, size_t len, char *why, size_t size)
{
    const char *secrets[] = {c_store,
                             c_key,
                             c_other,
                             c_out,
                             c_env,
                             "ESCAPED",
                             shadow_head[0] ? shadow_head : NULL,
                             "test_security_escape"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(secrets); i++)
        if (secrets[i] && text && memmem(text, len, secrets[i], strlen(secrets[i]))) {
            snprintf(why, size, "ESCAPED: the output holds %.24s", secrets[i]);
            return true;
        }
    return false;
}

static bool file_is(const char *path, const char *text)
{
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strcmp(buf, text) == 0;
}

/* The names in dir, sorted, joined by spaces, without those in `skip` (a space-separated list
 * of names that may come and go). */
static void names(const char *dir, char *out, size_t size)
{
    out[0] = 0;
    DIR *d = opendir(dir);
    if (!d)
        return;
    char *list[64];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 64)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            list[n++] = strdup(de->d_name);
    closedir(d);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(list[j], list[i]) < 0) {
                char *t = list[i];
                list[i] = list[j];
                list[j] = t;
            }
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, size - l, "%s%s", l ? " " : "", list[i]);
        free(list[i]);
    }
}

/* Everything outside workspace A as it was? */
static bool host_intact(char *why, size_t size)
{
    char p[600], got[1024];
    snprintf(p, sizeof p, "%s/store", home);
    bool ok = file_is(p, c_store);
    snprintf(p, sizeof p, "%s/key", home);
    ok = ok && file_is(p, c_key);
    snprintf(p, sizeof p, "%s/secret.txt", ws_b);
    ok = ok && file_is(p, c_other);
    snprintf(p, sizeof p, "%s/outside.txt", base);
    ok = ok && file_is(p, c_out);
    if (!ok) {
        snprintf(why, size, "ESCAPED: a file outside the workspace changed");
        return false;
    }
    struct {
        const char *dir, *want;
    } dirs[] = {{base, "home outside.txt"},
                {home, "key store workspaces"},
                {wsroot, "alice"},
                {ws_b, "secret.txt"}};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(dirs); i++) {
        names(dirs[i].dir, got, sizeof got);
        if (strcmp(got, dirs[i].want) != 0) {
            snprintf(why, size, "ESCAPED: %.80s now holds '%.80s'", dirs[i].dir, got);
            return false;
        }
    }
    snprintf(p, sizeof p, "%s/alice", wsroot);
    names(p, got, sizeof got);
    if (strcmp(got, "1 2") != 0) {
        snprintf(why, size, "ESCAPED: %.80s now holds '%.80s'", p, got);
        return false;
    }
    return true;
}

static void report(const char *name, bool escaped, const char *result)
{
    attempts++;
    if (escaped)
        escapes++;
    print_message("attempt %2d  %-52s %s\n", attempts, name, result);
}

/* ---- programs ------------------------------------------------------------------------------ */

typedef struct prog_attempt {
    const char *name;
    char lang;        /* 'p' python, 's' sh */
    const char *code; /* may hold %s for the scene's paths: see fill() */
    double wall_s;
} prog_attempt;

/* Replace @HOME@, @BASE@, @WSB@, @SOCK@, @ABSTRACT@ and @CANARIES@ in code. */
static void fill(const char *code, char *out, size_t size)
{
    size_t n = 0;
    out[0] = 0;
    for (const char *c = code; *c && n + 1 < size;) {
        const char *rep = NULL;
        size_t skip = 0;
        if (strncmp(c, "@HOME@", 6) == 0)
            rep = home, skip = 6;
        else if (strncmp(c, "@BASE@", 6) == 0)
            rep = base, skip = 6;
        else if (strncmp(c, "@WSB@", 5) == 0)
            rep = ws_b, skip = 5;
        else if (strncmp(c, "@SOCK@", 6) == 0)
            rep = sockdir, skip = 6;
        else if (strncmp(c, "@ABSTRACT@", 10) == 0)
            rep = abstract_name, skip = 10;
        if (rep) {
            n += (size_t)snprintf(out + n, size - n, "%s", rep);
            c += skip;
        } else if (strncmp(c, "@CANARIES@", 10) == 0) {
            n += (size_t)snprintf(out + n, size - n, "[b'%s', b'%s', b'%s', b'%s']", c_store, c_key,
                                  c_other, c_out);
            c += 10;
        } else {
            out[n++] = *c++;
            out[n] = 0;
        }
    }
}

static void run_prog(const prog_attempt *a)
{
    char code[8192];
    fill(a->code, code, sizeof code);
    const char *py[] = {SANDBOX_PYTHON, "-I", "-", NULL};
    const char *sh[] = {SANDBOX_SH, "-c", code, NULL};
    sandbox_spec s = {.argv = a->lang == 'p' ? py : sh,
                      .stdin_data = a->lang == 'p' ? code : NULL,
                      .stdin_len = a->lang == 'p' ? strlen(code) : 0,
                      .workspace = ws_a,
                      .limits = {.wall_s = a->wall_s ? a->wall_s : 5, .output_bytes = 1 << 16}};
    sandbox_result r;
    if (sandbox_exec(&s, &r) != LLMOS_OK)
        fail_msg("%s: sandbox_exec: %s", a->name, llmos_errmsg());
    char why[200];
    bool escaped = leaks(r.out.data, r.out.len, why, sizeof why) ||
                   leaks(r.err.data, r.err.len, why, sizeof why) || !host_intact(why, sizeof why);
    if (!escaped) {
        /* what stopped it: the signal, the timeout, or the last line of stderr */
        char last[120] = "";
        if (r.err.len) {
            size_t end = r.err.len;
            while (end && r.err.data[end - 1] == '\n')
                end--;
            size_t start = end;
            while (start && r.err.data[start - 1] != '\n')
                start--;
            snprintf(last, sizeof last, ": %.*s", (int)(end - start > 90 ? 90 : end - start),
                     r.err.data + start);
        } else if (r.out.len) {
            snprintf(last, sizeof last, ": %.*s", (int)(r.out.len > 90 ? 90 : r.out.len),
                     r.out.data);
            char *nl = strchr(last, '\n');
            if (nl)
                *nl = 0;
        }
        if (r.timed_out)
            snprintf(why, sizeof why, "blocked: killed at the %.0f s timeout, with all it started",
                     s.limits.wall_s);
        else if (r.signal == SIGSYS)
            snprintf(why, sizeof why, "blocked: killed by seccomp (SIGSYS)");
        else if (r.signal)
            snprintf(why, sizeof why, "blocked: killed by signal %d%s", r.signal, last);
        else
            snprintf(why, sizeof why, "%s: exit %d%s", r.exit_code ? "blocked" : "no escape",
                     r.exit_code, last);
    }
    report(a->name, escaped, why);
    sandbox_result_free(&r);
}

/* (entries leave wall_s out: the default) */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define CTYPES "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
#define SYSCALL_TRY(call)                                                                          \
    CTYPES "r = libc.syscall(" call ")\n"                                                          \
           "print('ESCAPED' if r >= 0 else 'refused, errno %d' % ctypes.get_errno())\n"
#define STR_(x) #x
#define STR(x)  STR_(x)

static const prog_attempt programs[] = {
    /* secrets */
    {"read /etc/shadow (python)", 'p', "print(open('/etc/shadow').read())\n"},
    {"read /etc/shadow (sh)", 's', "cat /etc/shadow"},
    {"read the store by its host path", 'p', "print(open('@HOME@/store').read())\n"},
    {"read the key file by its host path", 'p', "print(open('@HOME@/key').read())\n"},
    {"read the store through ../ from /work", 'p', "print(open('/work/../../../store').read())\n"},
    {"read another process's workspace (host path)", 'p',
     "print(open('@WSB@/secret.txt').read())\n"},
    {"read another process's workspace (../2)", 's', "cat ../2/secret.txt /work/../2/secret.txt"},
    {"search the whole file system for the secrets", 'p',
     "import os\nc = @CANARIES@\n"
     "for d, ds, fs in os.walk('/'):\n"
     "    if d.startswith(('/proc', '/dev')): ds[:] = []; continue\n"
     "    for f in fs:\n"
     "        try: b = open(os.path.join(d, f), 'rb').read(1 << 20)\n"
     "        except Exception: continue\n"
     "        if any(x in b for x in c): print('ESCAPED', d, f)\n"
     "print('searched')\n",
     20},
    {"read /etc/shadow through /proc/1/root", 'p',
     "print(open('/proc/1/root/../../etc/shadow').read())\n"},
    {"read the parent's environment (/proc/1/environ)", 'p',
     "print(open('/proc/1/environ', 'rb').read())\n"},
    {"read the parent's command line (/proc/1/cmdline)", 'p',
     "print(open('/proc/1/cmdline', 'rb').read().replace(b'\\0', b''))\n"},
    {"read the parent's memory (/proc/1/mem)", 'p',
     "f = open('/proc/1/mem', 'rb')\nprint('ESCAPED', f.read(16))\n"},
    {"find llmos among the processes in /proc", 'p',
     "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
     "for p in pids:\n"
     "    try: print(open('/proc/%s/cmdline' % p, 'rb').read().replace(b'\\0', b' '))\n"
     "    except Exception as e: print(p, e)\n"
     "print(len(pids), 'processes visible')\n"},
    {"find a setuid program to run", 's',
     "find / -xdev -perm -4000 -type f 2>/dev/null | grep -v '^/work' | sed 's/^/ESCAPED /'; "
     "echo searched"},
    /* writes */
    {"write /etc/passwd", 'p', "open('/etc/passwd', 'a').write('x::0:0::/:/bin/sh\\n')\n"},
    {"write the interpreter's standard library", 'p',
     "open('/usr/lib/' + __import__('os').listdir('/usr/lib')[0] + '/x', 'w')\n"},
    {"create a file in /", 's', "touch /evil"},
    {"write beside the home by its host path", 'p', "open('@BASE@/evil.txt', 'w').write('x')\n"},
    {"write outside through /work/..", 'p', "open('/work/../evil.txt', 'w').write('x')\n"},
    {"replace the store through a host path symlink", 's',
     "ln -sf @HOME@/store /work/store-link && echo x > /work/store-link; rm -f /work/store-link"},
    {"hard-link /etc/passwd into the workspace", 'p', "import os\nos.link('/etc/passwd', 'hl')\n"},
    {"hard-link the interpreter into the workspace", 'p',
     "import os, sys\nos.link(os.path.realpath(sys.executable), 'hl')\n"},
    /* network */
    {"open an inet socket", 'p',
     "import socket\nsocket.socket(socket.AF_INET)\nprint('ESCAPED')\n"},
    {"open an inet6 socket", 'p',
     "import socket\nsocket.socket(socket.AF_INET6)\nprint('ESCAPED')\n"},
    {"open a netlink socket", 'p',
     "import socket\nsocket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\nprint('ESCAPED')\n"},
    {"open a packet socket", 'p',
     "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)\nprint('ESCAPED')\n"},
    {"connect to 127.0.0.1", 'p',
     "import socket\nsocket.create_connection(('127.0.0.1', 22), 1)\nprint('ESCAPED')\n"},
    {"connect to a unix socket of the host (abstract)", 'p',
     "import socket\ns = socket.socket(socket.AF_UNIX)\n"
     "s.connect('\\0@ABSTRACT@')\nprint('ESCAPED')\n"},
    {"connect to a unix socket of the host (path)", 'p',
     "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('@SOCK@/sock')\n"
     "print('ESCAPED')\n"},
    /* resources */
    {"fork bomb (python)", 'p',
     "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n", 3},
    {"fork bomb (sh)", 's', "f() { f | f & }; f; wait", 3},
    {"thread bomb", 'p',
     "import threading, time\nwhile True: threading.Thread(target=time.sleep, "
     "args=(60,)).start()\n",
     3},
    {"memory bomb (one 8 GiB block)", 'p', "x = bytearray(8 << 30)\nprint('ESCAPED')\n"},
    {"memory bomb (growing)", 'p', "l = []\nwhile True: l.append(bytearray(64 << 20))\n"},
    {"infinite loop", 'p', "while True: pass\n", 2},
    {"disk: one 200 MiB file", 'p', "open('/work/big', 'wb').write(b'x' * (200 << 20))\n"},
    {"fill /tmp", 'p', "open('/tmp/big', 'wb').write(b'x' * (100 << 20))\n"},
    {"exhaust file descriptors", 'p', "l = [open('/dev/null') for i in range(1 << 20)]\n"},
    {"flood stdout", 'p', "import sys\nwhile True: sys.stdout.write('y' * 65536)\n", 2},
    {"kill every process it can see", 'p', "import os\nos.kill(-1, 9)\n"},
    {"flush every file system of the host (sync)", 'p', "import os\nos.sync()\nprint('ESCAPED')\n"},
    /* privileges */
    {"ptrace itself (PTRACE_TRACEME)", 'p', SYSCALL_TRY(STR(SYS_ptrace) ", 0, 0, 0, 0")},
    {"ptrace the namespace's init", 'p', SYSCALL_TRY(STR(SYS_ptrace) ", 16, 1, 0, 0")},
    {"read init's memory (process_vm_readv)", 'p',
     SYSCALL_TRY(STR(SYS_process_vm_readv) ", 1, 0, 0, 0, 0, 0")},
    {"mount a tmpfs", 'p', SYSCALL_TRY(STR(SYS_mount) ", b'x', b'/tmp', b'tmpfs', 0, 0")},
    {"unmount /work", 'p', SYSCALL_TRY(STR(SYS_umount2) ", b'/work', 2")},
    {"chroot", 'p', SYSCALL_TRY(STR(SYS_chroot) ", b'/tmp'")},
    {"unshare a user namespace", 'p', SYSCALL_TRY(STR(SYS_unshare) ", 0x10000000")},
    {"clone into a new user namespace", 'p',
     CTYPES "r = libc.syscall(" STR(SYS_clone) ", 0x10000000 | 17, 0, 0, 0, 0)\n"
                                               "if r == 0: libc._exit(0)\n"
                                               "print('ESCAPED' if r > 0 else 'refused')\n"},
    {"setns into init's namespaces", 'p',
     "import os\nfd = os.open('/proc/1/ns/user', os.O_RDONLY)\n" SYSCALL_TRY(
         STR(SYS_setns) ", fd, 0")},
    {"become root (setuid 0)", 'p', "import os\nos.setuid(0)\nprint('ESCAPED')\n"},
    {"run a setuid copy of sh", 's',
     "cp /bin/sh /work/suid && chmod 4755 /work/suid && /work/suid -c 'id -u' | "
     "sed 's/^0$/ESCAPED/'; rm -f /work/suid"},
    {"keyctl (the session keyring)", 'p', SYSCALL_TRY(STR(SYS_keyctl) ", 0, -3, 0")},
    {"add_key", 'p', SYSCALL_TRY(STR(SYS_add_key) ", b'user', b'x', b'y', 1, -3")},
    {"bpf", 'p', SYSCALL_TRY(STR(SYS_bpf) ", 0, 0, 0")},
    {"perf_event_open", 'p', SYSCALL_TRY(STR(SYS_perf_event_open) ", 0, 0, -1, -1, 0")},
    {"userfaultfd", 'p', SYSCALL_TRY(STR(SYS_userfaultfd) ", 0")},
    {"io_uring_setup", 'p', SYSCALL_TRY(STR(SYS_io_uring_setup) ", 1, 0")},
    {"open_by_handle_at (the 'shocker' escape)", 'p',
     SYSCALL_TRY(STR(SYS_open_by_handle_at) ", 3, 0, 0")},
    {"load a kernel module", 'p', SYSCALL_TRY(STR(SYS_init_module) ", 0, 0, b''")},
    {"make a device node", 'p', "import os\nos.mknod('/work/mem', 0o20600, os.makedev(1, 1))\n"},
    {"personality (READ_IMPLIES_EXEC)", 'p', SYSCALL_TRY(STR(SYS_personality) ", 0x0400000")},
    {"push input into a terminal (TIOCSTI)", 'p',
     "import fcntl, termios\nfcntl.ioctl(0, termios.TIOCSTI, b'x')\nprint('ESCAPED')\n"},
};

/* A listening unix socket of the host, abstract and by path, for the connect attempts. */
static int host_unix_socket(bool abstract)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    socklen_t len;
    if (abstract) {
        /* a name of this run: tests of other checkouts may run at the same time */
        size_t n = strlen(abstract_name);
        memcpy(a.sun_path + 1, abstract_name, n);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    } else {
        snprintf(a.sun_path, sizeof a.sun_path, "%.90s/sock", sockdir);
        len = sizeof a;
    }
    if (s < 0 || bind(s, (struct sockaddr *)&a, len) != 0 || listen(s, 4) != 0)
        fail_msg("a host unix socket: %s", strerror(errno));
    return s;
}

static void test_programs(void **state)
{
    (void)state;
    need_sandbox();
    int s1 = host_unix_socket(true), s2 = host_unix_socket(false);
    char sockpath[600];
    snprintf(sockpath, sizeof sockpath, "%s/sock", sockdir);
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(programs); i++) {
        run_prog(&programs[i]);
        /* what the runs may leave in their own workspace is theirs; keep it small */
        char p[600];
        snprintf(p, sizeof p, "%s/big", ws_a);
        struct stat st;
        if (stat(p, &st) == 0) {
            if (st.st_size > (off_t)64 << 20) {
                attempts++;
                escapes++;
                print_message("ESCAPED: a file past the 64 MiB limit: %lld bytes\n",
                              (long long)st.st_size);
            }
            unlink(p);
        }
    }
    close(s1);
    close(s2);
    unlink(sockpath);
}

/* ---- the files tool ------------------------------------------------------------------------ */

/* One call of the files tool for process 1 (pid 1's workspace is ws_a); *is_error when it
 * failed; the text it returned (or its error) in out. */
static bool files_call(const char *args, llmos_buf *out)
{
    json_t *a = json_loads(args, 0, NULL);
    assert_non_null(a);
    ktool_host host = {.k = k};
    buf_clear(out);
    ktool_env env = {.args = a, .pid = 1, .principal = "alice", .out = out, .host = &host};
    llmos_err err = tool_files.run(&env);
    if (err) {
        buf_clear(out);
        assert_int_equal(buf_puts(out, llmos_errmsg()), LLMOS_OK);
    }
    json_decref(a);
    return err != LLMOS_OK;
}

static void files_attempt(const char *name, const char *args)
{
    llmos_buf out = {0};
    bool failed = files_call(args, &out);
    char why[200];
    bool escaped = leaks(out.data, out.len, why, sizeof why) || !host_intact(why, sizeof why);
    if (!escaped)
        snprintf(why, sizeof why, "%s: %.90s", failed ? "blocked" : "harmless",
                 out.data ? out.data : "");
    report(name, escaped, why);
    buf_free(&out);
}

static void sh_in_a(const char *cmd)
{
    char code[2048];
    fill(cmd, code, sizeof code);
    const char *argv[] = {SANDBOX_SH, "-c", code, NULL};
    sandbox_spec s = {.argv = argv, .workspace = ws_a};
    sandbox_result r;
    assert_int_equal(sandbox_exec(&s, &r), LLMOS_OK);
    if (r.exit_code != 0)
        fail_msg("'%s' failed: %s", code, r.err.data ? r.err.data : "");
    sandbox_result_free(&r);
}

/* A run that flips the link 'flip' between a file inside and the store's host path while the
 * files tool reads it. */
static atomic_bool flipping;
static void *flipper(void *arg)
{
    (void)arg;
    char code[1024];
    fill("import os, time\nopen('benign.txt', 'w').write('benign')\nend = time.time() + 2.5\n"
         "while time.time() < end:\n"
         "    for t in ('benign.txt', '@HOME@/store', '../../../store', "
         "'/proc/1/root/etc/passwd'):\n"
         "        os.symlink(t, 'flip.new')\n"
         "        os.rename('flip.new', 'flip')\n",
         code, sizeof code);
    const char *argv[] = {SANDBOX_PYTHON, "-I", "-", NULL};
    sandbox_spec s = {.argv = argv,
                      .stdin_data = code,
                      .stdin_len = strlen(code),
                      .workspace = ws_a,
                      .limits = {.wall_s = 5}};
    sandbox_result r;
    if (sandbox_exec(&s, &r) == LLMOS_OK)
        sandbox_result_free(&r);
    atomic_store(&flipping, false);
    return NULL;
}

static void test_files_tool(void **state)
{
    (void)state;
    need_sandbox();
    char args[1200];
    files_attempt("files: read /etc/shadow", "{\"op\":\"read\",\"path\":\"/etc/shadow\"}");
    files_attempt("files: read ../../../store", "{\"op\":\"read\",\"path\":\"../../../store\"}");
    files_attempt("files: read ../2/secret.txt (another workspace)",
                  "{\"op\":\"read\",\"path\":\"../2/secret.txt\"}");
    snprintf(args, sizeof args, "{\"op\":\"read\",\"path\":\"%s/secret.txt\"}", ws_b);
    files_attempt("files: read another workspace by its host path", args);
    files_attempt("files: list ..", "{\"op\":\"list\",\"path\":\"..\"}");
    files_attempt("files: list /", "{\"op\":\"list\",\"path\":\"/\"}");
    /* links the sandboxed program made */
    sh_in_a("ln -s @HOME@/store l_store; ln -s ../ up; ln -s /etc l_etc; "
            "ln -s /proc/self/root l_root; ln -s @BASE@/outside.txt planted");
    files_attempt("files: read a symlink to the store's host path",
                  "{\"op\":\"read\",\"path\":\"l_store\"}");
    files_attempt("files: read through a symlink to ../ (up/2/secret.txt)",
                  "{\"op\":\"read\",\"path\":\"up/2/secret.txt\"}");
    files_attempt("files: read /etc/shadow through a symlink to /etc",
                  "{\"op\":\"read\",\"path\":\"l_etc/shadow\"}");
    files_attempt("files: read through a magic link (/proc/self/root)",
                  "{\"op\":\"read\",\"path\":\"l_root/etc/shadow\"}");
    files_attempt("files: list through a symlink to ../", "{\"op\":\"list\",\"path\":\"up\"}");
    files_attempt("files: write ../evil.txt",
                  "{\"op\":\"write\",\"path\":\"../evil.txt\",\"content\":\"x\"}");
    snprintf(args, sizeof args, "{\"op\":\"write\",\"path\":\"%s/evil.txt\",\"content\":\"x\"}",
             base);
    files_attempt("files: write beside the home by its host path", args);
    files_attempt("files: write through a symlink to ../ (up/evil.txt)",
                  "{\"op\":\"write\",\"path\":\"up/evil.txt\",\"content\":\"x\"}");
    files_attempt("files: create directories through up/ (up/a/b)",
                  "{\"op\":\"write\",\"path\":\"up/a/b\",\"content\":\"x\"}");
    files_attempt("files: patch a file outside through a symlink",
                  "{\"op\":\"patch\",\"path\":\"planted\",\"old\":\"CANARY\",\"new\":\"x\"}");
    files_attempt("files: write to a symlink planted at the name",
                  "{\"op\":\"write\",\"path\":\"planted\",\"content\":\"overwritten\"}");
    /* a hard link to the file outside (a sandboxed run cannot make one across its mounts:
     * attempted above; here it is made from outside, as someone else might) */
    char hl[600], out[600];
    snprintf(hl, sizeof hl, "%s/hardlink", ws_a);
    snprintf(out, sizeof out, "%s/outside.txt", base);
    assert_int_equal(link(out, hl), 0);
    files_attempt("files: read a hard link to a file outside",
                  "{\"op\":\"read\",\"path\":\"hardlink\"}");
    files_attempt("files: write to a hard link to a file outside",
                  "{\"op\":\"write\",\"path\":\"hardlink\",\"content\":\"overwritten\"}");
    files_attempt("files: patch a hard link to a file outside",
                  "{\"op\":\"patch\",\"path\":\"hardlink\",\"old\":\"over\",\"new\":\"x\"}");
    unlink(hl);
    /* the race: a link flipped between inside and outside while it is read */
    atomic_store(&flipping, true);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, flipper, NULL), 0);
    usleep(300000);
    int reads = 0, benign = 0, leaked = 0;
    llmos_buf o = {0};
    char why[200];
    while (atomic_load(&flipping) && reads < 5000) {
        bool failed = files_call("{\"op\":\"read\",\"path\":\"flip\"}", &o);
        reads++;
        if (!failed && o.data && strcmp(o.data, "benign") == 0)
            benign++;
        else if (!failed || leaks(o.data, o.len, why, sizeof why))
            leaked++;
    }
    pthread_join(t, NULL);
    buf_free(&o);
    snprintf(why, sizeof why,
             "%s: %d reads while a run flipped the link, %d of the file inside, "
             "%d of anything else",
             leaked ? "ESCAPED" : "blocked", reads, benign, leaked);
    report("files: read a symlink being flipped to outside", leaked > 0 || reads < 10, why);
    bool ok = host_intact(why, sizeof why);
    report("files: everything outside intact after the race", !ok, ok ? "intact" : why);
}

/* ---- the end ------------------------------------------------------------------------------- */

static void test_survived(void **state)
{
    (void)state;
    need_sandbox();
    /* this process is alive (it runs this), can still start processes, and no process of a
     * run is left (as root the runs are nobody's outside; count nobody's processes) */
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0)
        _exit(0);
    assert_int_equal(waitpid(p, NULL, 0), p);
    /* a process left by a run descends from this one (its namespace's init was our child);
     * other checkouts' tests may run sandboxes at the same time, so nobody's processes alone
     * say nothing */
    int left = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        int pid = atoi(de->d_name);
        if (pid <= 0 || pid == getpid())
            continue;
        for (int hops = 0; pid > 1 && hops < 64; hops++) {
            char path[64], line[256];
            int ppid = 0;
            snprintf(path, sizeof path, "/proc/%d/status", pid);
            FILE *f = fopen(path, "r");
            while (f && fgets(line, sizeof line, f))
                if (strncmp(line, "PPid:", 5) == 0)
                    ppid = atoi(line + 5);
            if (f)
                fclose(f);
            if (ppid == getpid()) {
                left++;
                break;
            }
            pid = ppid;
        }
    }
    if (d)
        closedir(d);
    char why[96];
    snprintf(why, sizeof why, "%s: %d processes of the runs left", left ? "ESCAPED" : "survived",
             left);
    report("llmos survives every attempt, nothing left running", left != 0, why);
    print_message("escapes: %d of %d attempts\n", escapes, attempts);
    assert_int_equal(escapes, 0);
    assert_true(attempts >= 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_programs),
        cmocka_unit_test(test_files_tool),
        cmocka_unit_test(test_survived),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
