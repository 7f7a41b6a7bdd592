/*
 * mcp.c - the Model Context Protocol client over stdio (include/llmos/mcp.h says what it
 * promises; docs/tools.md, "MCP").
 *
 * The server is a child in a process group of its own, started with posix_spawnp, its stdin,
 * stdout and stderr on pipes held non-blocking on our side. One loop, mcp_wait_response,
 * does all the reading: poll() on stdout and stderr until the deadline, stdout bytes cut into
 * lines (each at most message_bytes), stderr bytes kept as a short tail. While it waits for
 * the answer to its request it answers the server's own requests and drops notifications.
 * Any breach of the protocol or of a limit kills the server (mcp_kill): after that the client
 * only says so.
 */
#include "llmos/mcp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llmos/json.h"

extern char **environ;

#define MCP_DEFAULT_REQUEST_S 30.0
#define MCP_DEFAULT_MESSAGE   (4u << 20)
#define MCP_DEFAULT_STDERR    (8u << 10)
#define MCP_DEFAULT_MAX_TOOLS 1024
#define MCP_JSON_DEPTH        64
#define MCP_CLOSE_GRACE_S     0.5

struct mcp_client {
    pid_t pid;      /* 0 once killed and reaped */
    int in_fd;      /* the server's stdin (we write), -1 when closed */
    int out_fd;     /* the server's stdout (we read) */
    int err_fd;     /* the server's stderr (we read and mostly drop), -1 at EOF */
    mcp_limits limits;
    int64_t next_id;
    llmos_buf line;       /* stdout bytes not yet ending in a newline */
    char *err_tail;       /* a ring of the last stderr bytes */
    size_t err_len, err_pos;
    bool dead;            /* the server was killed: every call fails */
    char dead_reason[256];
    char server_name[128];
    char server_version[64];
    char protocol[32];
};

/* ---- the message parser (outside bytes: fuzz/fuzz_mcp.c) ---------------------------------- */

void mcp_message_free(mcp_message *m)
{
    if (!m)
        return;
    json_decref(m->json);
    memset(m, 0, sizeof *m);
}

llmos_err mcp_parse_message(const char *line, size_t len, mcp_message *out)
{
    memset(out, 0, sizeof *out);
    json_t *j = NULL;
    llmos_err err = ljson_parse_text(line, len, "MCP server message", MCP_JSON_DEPTH, &j);
    if (err != LLMOS_OK)
        return err;
    if (!json_is_object(j)) {
        json_decref(j);
        return llmos_fail(LLMOS_ERR_FORMAT, "MCP server message: not a JSON object (batches "
                                            "are not part of the protocol)");
    }
    const char *version = ljson_get_string(j, "jsonrpc", NULL);
    if (!version || strcmp(version, "2.0") != 0) {
        json_decref(j);
        return llmos_fail(LLMOS_ERR_FORMAT, "MCP server message: \"jsonrpc\" is not \"2.0\"");
    }
    json_t *id = json_object_get(j, "id");
    if (id && !json_is_integer(id) && !json_is_string(id)) {
        json_decref(j);
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "MCP server message: \"id\" is neither an integer nor a string");
    }
    json_t *method = json_object_get(j, "method");
    json_t *result = json_object_get(j, "result");
    json_t *error = json_object_get(j, "error");
    out->json = j;
    out->id = id;
    if (method) {
        if (!json_is_string(method) || json_string_length(method) == 0) {
            mcp_message_free(out);
            return llmos_fail(LLMOS_ERR_FORMAT, "MCP server message: \"method\" is not a "
                                                "non-empty string");
        }
        if (result || error) {
            mcp_message_free(out);
            return llmos_fail(LLMOS_ERR_FORMAT, "MCP server message: a request with a "
                                                "\"result\" or \"error\"");
        }
        json_t *params = json_object_get(j, "params");
        if (params && !json_is_object(params) && !json_is_array(params)) {
            mcp_message_free(out);
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "MCP server message: \"params\" is neither an object nor an array");
        }
        out->method = json_string_value(method);
        out->kind = id ? MCP_MSG_REQUEST : MCP_MSG_NOTIFICATION;
        return LLMOS_OK;
    }
    if (!id) {
        mcp_message_free(out);
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "MCP server message: neither a \"method\" nor an \"id\"");
    }
    if ((result != NULL) == (error != NULL)) {
        mcp_message_free(out);
        return llmos_fail(LLMOS_ERR_FORMAT, "MCP server message: a response needs exactly one "
                                            "of \"result\" and \"error\"");
    }
    out->kind = MCP_MSG_RESPONSE;
    if (result) {
        out->result = result;
        return LLMOS_OK;
    }
    json_t *code = json_is_object(error) ? json_object_get(error, "code") : NULL;
    json_t *message = json_is_object(error) ? json_object_get(error, "message") : NULL;
    if (!json_is_integer(code) || !json_is_string(message)) {
        mcp_message_free(out);
        return llmos_fail(LLMOS_ERR_FORMAT, "MCP server message: \"error\" needs an integer "
                                            "\"code\" and a string \"message\"");
    }
    out->error_code = json_integer_value(code);
    out->error_message = json_string_value(message);
    return LLMOS_OK;
}

/* ---- the child ------------------------------------------------------------------------------ */

static double mcp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void mcp_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Keep the last stderr_bytes of what the server wrote on stderr. */
static void mcp_keep_stderr(mcp_client *c, const char *data, size_t n)
{
    size_t cap = c->limits.stderr_bytes;
    for (size_t i = 0; i < n; i++) {
        c->err_tail[c->err_pos] = data[i];
        c->err_pos = (c->err_pos + 1) % cap;
        if (c->err_len < cap)
            c->err_len++;
    }
}

/* The kept stderr as one line (newlines and control bytes as spaces) in out[size]. */
static const char *mcp_stderr_text(const mcp_client *c, char *out, size_t size)
{
    size_t cap = c->limits.stderr_bytes, n = 0;
    size_t start = (c->err_pos + cap - c->err_len) % cap;
    /* the end of the tail says most: skip what does not fit */
    size_t skip = c->err_len + 1 > size ? c->err_len + 1 - size : 0;
    for (size_t i = skip; i < c->err_len && n + 1 < size; i++) {
        unsigned char ch = (unsigned char)c->err_tail[(start + i) % cap];
        out[n++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    return out;
}

/* Read what stderr has now (non-blocking); EOF closes it. */
static void mcp_drain_stderr(mcp_client *c)
{
    char chunk[4096];
    while (c->err_fd >= 0) {
        ssize_t r = read(c->err_fd, chunk, sizeof chunk);
        if (r > 0) {
            mcp_keep_stderr(c, chunk, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        mcp_close_fd(&c->err_fd);
    }
}

/* Kill the server's process group and reap it; pipes closed. */
static void mcp_kill(mcp_client *c)
{
    if (c->pid > 0) {
        kill(-c->pid, SIGKILL);
        kill(c->pid, SIGKILL);
        while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        c->pid = 0;
    }
    mcp_drain_stderr(c);
    mcp_close_fd(&c->in_fd);
    mcp_close_fd(&c->out_fd);
    mcp_close_fd(&c->err_fd);
}

/* Kill the server for `err` (whose message is already set) and remember why, with the tail
 * of its stderr; returns err with that message. */
static llmos_err mcp_die(mcp_client *c, llmos_err err)
{
    char why[sizeof c->dead_reason];
    snprintf(why, sizeof why, "%s", llmos_errmsg());
    mcp_kill(c);
    c->dead = true;
    snprintf(c->dead_reason, sizeof c->dead_reason, "%s", why);
    char tail[512];
    mcp_stderr_text(c, tail, sizeof tail);
    if (tail[0])
        return llmos_fail(err, "%s (the server was stopped; its stderr ends: %s)", why, tail);
    return llmos_fail(err, "%s (the server was stopped)", why);
}

static llmos_err mcp_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return llmos_fail(LLMOS_ERR_IO, "MCP: fcntl O_NONBLOCK: %s", strerror(errno));
    return LLMOS_OK;
}

/* The environment a server gets: only these of ours (what the reference SDKs pass too), so
 * that LLMOS_PASSPHRASE, API keys and the like never reach outside code. */
static const char *const mcp_env_kept[] = {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER",
                                           "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ"};

static bool mcp_env_is_kept(const char *entry)
{
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(mcp_env_kept); i++) {
        size_t n = strlen(mcp_env_kept[i]);
        if (strncmp(entry, mcp_env_kept[i], n) == 0 && entry[n] == '=')
            return true;
    }
    return false;
}

/* Whether `program` names an executable, itself (with a slash) or in PATH: said before the
 * spawn, because where posix_spawnp forks (old C libraries, valgrind) a missing program is
 * only a child that exits 127. */
static bool mcp_program_exists(const char *program)
{
    if (strchr(program, '/'))
        return access(program, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char full[4096];
    for (const char *p = path;; ) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        int w = snprintf(full, sizeof full, "%.*s/%s", (int)n, n ? p : ".", program);
        if (w > 0 && (size_t)w < sizeof full && access(full, X_OK) == 0)
            return true;
        if (!end)
            return false;
        p = end + 1;
    }
}

static llmos_err mcp_spawn(mcp_client *c, const char *const *argv)
{
    if (!mcp_program_exists(argv[0]))
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "MCP: cannot start %s: no such program%s",
                          argv[0], strchr(argv[0], '/') ? "" : " in PATH");
    const char *env[LLMOS_ARRAY_LEN(mcp_env_kept) + 1];
    size_t n_env = 0;
    for (char **e = environ; *e && n_env < LLMOS_ARRAY_LEN(mcp_env_kept); e++)
        if (mcp_env_is_kept(*e))
            env[n_env++] = *e;
    env[n_env] = NULL;

    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        llmos_err e = llmos_fail(LLMOS_ERR_IO, "MCP: pipe: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            mcp_close_fd(&in[i]);
            mcp_close_fd(&out[i]);
            mcp_close_fd(&err[i]);
        }
        return e;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* dup2 clears close-on-exec on the copies; the originals close at exec */
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
    /* nothing else of ours: not the store, not serve's listening socket, not another
       server's pipes, even where an fd lacks close-on-exec */
    posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
    /* a group of its own, so that killing it takes what it started; default SIGPIPE etc. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    int rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv,
                          (char *const *)env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        return llmos_fail(rc == ENOENT ? LLMOS_ERR_NOT_FOUND : LLMOS_ERR_IO,
                          "MCP: cannot start %s: %s", argv[0], strerror(rc));
    }
    c->pid = pid;
    c->in_fd = in[1];
    c->out_fd = out[0];
    c->err_fd = err[0];
    llmos_err e = mcp_set_nonblock(c->in_fd);
    if (e == LLMOS_OK)
        e = mcp_set_nonblock(c->out_fd);
    if (e == LLMOS_OK)
        e = mcp_set_nonblock(c->err_fd);
    return e;
}

/* ---- writing -------------------------------------------------------------------------------- */

/* Write all of data to the server's stdin before the deadline. SIGPIPE is blocked meanwhile
 * (a server that closed its stdin yields EPIPE, not the death of llmos) and a pending one is
 * taken back before the mask is restored. */
static llmos_err mcp_write_all(mcp_client *c, const char *data, size_t n, double deadline)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    llmos_err err = LLMOS_OK;
    size_t done = 0;
    bool broke = false;
    while (done < n) {
        ssize_t w = write(c->in_fd, data + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            double left = deadline - mcp_now();
            if (left <= 0) {
                err = llmos_fail(LLMOS_ERR_LIMIT, "MCP: the server did not read its stdin "
                                                  "before the deadline");
                break;
            }
            /* keep its stderr flowing while we wait, or both sides may block */
            struct pollfd p[2] = {{.fd = c->in_fd, .events = POLLOUT},
                                  {.fd = c->err_fd, .events = POLLIN}};
            int ms = (int)(left * 1000) + 1;
            if (poll(p, c->err_fd >= 0 ? 2 : 1, ms) > 0 && c->err_fd >= 0 && p[1].revents)
                mcp_drain_stderr(c);
            continue;
        }
        broke = w < 0 && errno == EPIPE;
        err = llmos_fail(LLMOS_ERR_IO, "MCP: writing to the server: %s",
                         w < 0 ? strerror(errno) : "nothing written");
        break;
    }
    if (broke) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

static llmos_err mcp_send(mcp_client *c, json_t *msg, double deadline)
{
    llmos_buf b = {0};
    llmos_err err = ljson_to_buf(msg, JSON_COMPACT, &b);
    if (err == LLMOS_OK)
        err = buf_putc(&b, '\n');
    if (err == LLMOS_OK)
        err = mcp_write_all(c, b.data, b.len, deadline);
    buf_free(&b);
    return err;
}

/* ---- reading -------------------------------------------------------------------------------- */

/* The next complete line from the server's stdout into *line (its newline dropped; the caller
 * frees it), waiting until the deadline. */
static llmos_err mcp_read_line(mcp_client *c, double deadline, char **line, size_t *len)
{
    for (;;) {
        char *nl = c->line.len ? memchr(c->line.data, '\n', c->line.len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->line.data);
            if (n > c->limits.message_bytes)
                return llmos_fail(LLMOS_ERR_LIMIT, "MCP: a message of %zu bytes, over the limit "
                                                   "of %zu", n, c->limits.message_bytes);
            char *copy = malloc(n + 1);
            if (!copy)
                return llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory for a message");
            memcpy(copy, c->line.data, n);
            copy[n] = '\0';
            /* a CR before the newline is tolerated */
            if (n > 0 && copy[n - 1] == '\r')
                copy[--n] = '\0';
            size_t rest = c->line.len - (size_t)(nl - c->line.data) - 1;
            memmove(c->line.data, nl + 1, rest);
            c->line.len = rest;
            c->line.data[rest] = '\0';
            *line = copy;
            *len = n;
            return LLMOS_OK;
        }
        if (c->line.len > c->limits.message_bytes)
            return llmos_fail(LLMOS_ERR_LIMIT, "MCP: a message longer than the limit of %zu "
                                               "bytes", c->limits.message_bytes);
        double left = deadline - mcp_now();
        if (left <= 0)
            return llmos_fail(LLMOS_ERR_LIMIT, "MCP: no answer from the server before the "
                                               "deadline (%.1f s)", c->limits.request_s);
        struct pollfd p[2] = {{.fd = c->out_fd, .events = POLLIN},
                              {.fd = c->err_fd, .events = POLLIN}};
        int ms = (int)(left * 1000) + 1;
        int r = poll(p, c->err_fd >= 0 ? 2 : 1, ms);
        if (r < 0 && errno != EINTR)
            return llmos_fail(LLMOS_ERR_IO, "MCP: poll: %s", strerror(errno));
        if (r <= 0)
            continue;
        if (c->err_fd >= 0 && p[1].revents)
            mcp_drain_stderr(c);
        if (!p[0].revents)
            continue;
        llmos_err err = buf_reserve(&c->line, 65536);
        if (err != LLMOS_OK)
            return err;
        ssize_t got = read(c->out_fd, c->line.data + c->line.len, 65536);
        if (got > 0) {
            c->line.len += (size_t)got;
            c->line.data[c->line.len] = '\0';
            continue;
        }
        if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        return llmos_fail(LLMOS_ERR_IO, "MCP: the server closed its stdout%s",
                          got < 0 ? " with an error" : " (it exited?)");
    }
}

/* Answer a request the server sent us: ping with {}, anything else "method not found". */
static llmos_err mcp_answer_server(mcp_client *c, const mcp_message *m, double deadline)
{
    json_t *reply;
    if (strcmp(m->method, "ping") == 0)
        reply = json_pack("{s:s, s:O, s:{}}", "jsonrpc", "2.0", "id", m->id, "result");
    else
        reply = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", m->id, "error",
                          "code", -32601, "message", "method not found");
    if (!reply)
        return llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory for a reply");
    llmos_err err = mcp_send(c, reply, deadline);
    json_decref(reply);
    return err;
}

/* Wait for the response to request `id`; *out holds it (mcp_message_free). */
static llmos_err mcp_wait_response(mcp_client *c, int64_t id, double deadline, mcp_message *out)
{
    for (;;) {
        char *line = NULL;
        size_t len = 0;
        llmos_err err = mcp_read_line(c, deadline, &line, &len);
        if (err != LLMOS_OK)
            return err;
        if (len == 0) { /* blank lines between messages are harmless */
            free(line);
            continue;
        }
        mcp_message m;
        err = mcp_parse_message(line, len, &m);
        free(line);
        if (err != LLMOS_OK)
            return err;
        if (m.kind == MCP_MSG_REQUEST) {
            err = mcp_answer_server(c, &m, deadline);
            mcp_message_free(&m);
            if (err != LLMOS_OK)
                return err;
            continue;
        }
        if (m.kind == MCP_MSG_NOTIFICATION || !json_is_integer(m.id) ||
            json_integer_value(m.id) != id) {
            /* logging, progress, a late answer to a request we gave up on */
            mcp_message_free(&m);
            continue;
        }
        *out = m;
        return LLMOS_OK;
    }
}

/* Send `method` with `params` (borrowed; NULL for none) and wait for its result. On success
 * *resp holds the response, which has a result (a JSON-RPC error answer is LLMOS_ERR_INVALID
 * and leaves the server running). Transport and protocol failures kill the server. */
static llmos_err mcp_request(mcp_client *c, const char *method, json_t *params, mcp_message *resp)
{
    if (c->dead)
        return llmos_fail(LLMOS_ERR_IO, "MCP: the server was stopped earlier: %s",
                          c->dead_reason);
    double deadline = mcp_now() + c->limits.request_s;
    int64_t id = c->next_id++;
    json_t *msg = json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", (json_int_t)id, "method",
                            method);
    if (!msg || (params && json_object_set(msg, "params", params) != 0)) {
        json_decref(msg);
        return llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory for a request");
    }
    llmos_err err = mcp_send(c, msg, deadline);
    json_decref(msg);
    if (err == LLMOS_OK)
        err = mcp_wait_response(c, id, deadline, resp);
    if (err != LLMOS_OK)
        return mcp_die(c, err);
    if (!resp->result) {
        err = llmos_fail(LLMOS_ERR_INVALID, "MCP: %s: the server answered error %lld: %s",
                         method, (long long)resp->error_code, resp->error_message);
        mcp_message_free(resp);
        return err;
    }
    return LLMOS_OK;
}

/* ---- the protocol --------------------------------------------------------------------------- */

static bool mcp_version_known(const char *v)
{
    static const char *const known[] = {"2025-06-18", "2025-03-26", "2024-11-05"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(known); i++)
        if (strcmp(v, known[i]) == 0)
            return true;
    return false;
}

static llmos_err mcp_initialize(mcp_client *c)
{
    json_t *params = json_pack("{s:s, s:{}, s:{s:s, s:s}}", "protocolVersion",
                               MCP_PROTOCOL_VERSION, "capabilities", "clientInfo", "name",
                               "llmos", "version", LLMOS_VERSION);
    if (!params)
        return llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory for initialize");
    mcp_message resp;
    llmos_err err = mcp_request(c, "initialize", params, &resp);
    json_decref(params);
    if (err != LLMOS_OK)
        return err;
    const char *version = ljson_get_string(resp.result, "protocolVersion", NULL);
    if (!json_is_object(resp.result) || !version ||
        !json_is_object(json_object_get(resp.result, "capabilities"))) {
        mcp_message_free(&resp);
        return mcp_die(c, llmos_fail(LLMOS_ERR_FORMAT, "MCP: the initialize result lacks "
                                                       "protocolVersion or capabilities"));
    }
    if (!mcp_version_known(version)) {
        llmos_fail(LLMOS_ERR_UNSUPPORTED, "MCP: the server speaks protocol %.40s, which this "
                                          "client does not (it speaks %s, 2025-03-26, "
                                          "2024-11-05)", version, MCP_PROTOCOL_VERSION);
        mcp_message_free(&resp);
        return mcp_die(c, LLMOS_ERR_UNSUPPORTED);
    }
    snprintf(c->protocol, sizeof c->protocol, "%s", version);
    json_t *info = ljson_get_object(resp.result, "serverInfo");
    snprintf(c->server_name, sizeof c->server_name, "%s", ljson_get_string(info, "name", ""));
    snprintf(c->server_version, sizeof c->server_version, "%s",
             ljson_get_string(info, "version", ""));
    mcp_message_free(&resp);
    json_t *note = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method",
                             "notifications/initialized");
    if (!note)
        return llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory for a notification");
    err = mcp_send(c, note, mcp_now() + c->limits.request_s);
    json_decref(note);
    return err == LLMOS_OK ? LLMOS_OK : mcp_die(c, err);
}

llmos_err mcp_connect(const char *const *argv, const mcp_limits *limits, mcp_client **out)
{
    *out = NULL;
    if (!argv || !argv[0] || !argv[0][0])
        return llmos_fail(LLMOS_ERR_INVALID, "MCP: no command to start");
    mcp_client *c = calloc(1, sizeof *c);
    if (!c)
        return llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory");
    if (limits)
        c->limits = *limits;
    if (c->limits.request_s <= 0)
        c->limits.request_s = MCP_DEFAULT_REQUEST_S;
    if (c->limits.message_bytes == 0)
        c->limits.message_bytes = MCP_DEFAULT_MESSAGE;
    if (c->limits.stderr_bytes == 0)
        c->limits.stderr_bytes = MCP_DEFAULT_STDERR;
    if (c->limits.max_tools == 0)
        c->limits.max_tools = MCP_DEFAULT_MAX_TOOLS;
    c->in_fd = c->out_fd = c->err_fd = -1;
    c->next_id = 1;
    c->err_tail = malloc(c->limits.stderr_bytes);
    if (!c->err_tail) {
        free(c);
        return llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory");
    }
    llmos_err err = mcp_spawn(c, argv);
    if (err == LLMOS_OK)
        err = mcp_initialize(c);
    if (err != LLMOS_OK) {
        /* keep the message of the failure, not of the cleanup */
        mcp_kill(c);
        buf_free(&c->line);
        free(c->err_tail);
        free(c);
        return err;
    }
    *out = c;
    return LLMOS_OK;
}

const char *mcp_server_name(const mcp_client *c) { return c->server_name; }
const char *mcp_server_version(const mcp_client *c) { return c->server_version; }
const char *mcp_protocol_version(const mcp_client *c) { return c->protocol; }
pid_t mcp_server_pid(const mcp_client *c) { return c->pid; }

void mcp_tools_free(mcp_tool *tools, size_t n)
{
    if (!tools)
        return;
    for (size_t i = 0; i < n; i++) {
        free(tools[i].description);
        json_decref(tools[i].input_schema);
    }
    free(tools);
}

static bool mcp_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MCP_TOOL_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
        if (!ok)
            return false;
    }
    return true;
}

/* Check one entry of a tools/list answer and append it. */
static llmos_err mcp_take_tool(json_t *entry, size_t index, mcp_tool *t)
{
    const char *name = ljson_get_string(entry, "name", NULL);
    if (!name || !mcp_name_ok(name))
        return llmos_fail(LLMOS_ERR_FORMAT, "MCP: tools/list entry %zu: \"name\" is missing or "
                                            "not 1..%d of [A-Za-z0-9_.-]", index,
                          MCP_TOOL_NAME_MAX);
    json_t *schema = json_object_get(entry, "inputSchema");
    const char *type = ljson_get_string(schema, "type", NULL);
    if (!json_is_object(schema) || !type || strcmp(type, "object") != 0)
        return llmos_fail(LLMOS_ERR_FORMAT, "MCP: tool %s: \"inputSchema\" is not a JSON Schema "
                                            "object of type \"object\"", name);
    json_t *props = json_object_get(schema, "properties");
    if (props && !json_is_object(props))
        return llmos_fail(LLMOS_ERR_FORMAT, "MCP: tool %s: inputSchema \"properties\" is not an "
                                            "object", name);
    json_t *desc = json_object_get(entry, "description");
    if (desc && !json_is_string(desc))
        return llmos_fail(LLMOS_ERR_FORMAT, "MCP: tool %s: \"description\" is not a string",
                          name);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->description = strdup(desc ? json_string_value(desc) : "");
    if (!t->description)
        return llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory");
    t->input_schema = json_incref(schema);
    return LLMOS_OK;
}

llmos_err mcp_list_tools(mcp_client *c, mcp_tool **tools, size_t *n)
{
    *tools = NULL;
    *n = 0;
    mcp_tool *list = NULL;
    size_t count = 0;
    char *cursor = NULL;
    llmos_err err = LLMOS_OK;
    for (int page = 0; err == LLMOS_OK; page++) {
        json_t *params = cursor ? json_pack("{s:s}", "cursor", cursor) : NULL;
        free(cursor);
        cursor = NULL;
        mcp_message resp;
        err = mcp_request(c, "tools/list", params, &resp);
        json_decref(params);
        if (err != LLMOS_OK)
            break;
        json_t *array = ljson_get_array(resp.result, "tools");
        if (!array) {
            mcp_message_free(&resp);
            err = mcp_die(c, llmos_fail(LLMOS_ERR_FORMAT, "MCP: the tools/list result has no "
                                                          "\"tools\" array"));
            break;
        }
        size_t more = json_array_size(array);
        if (more > c->limits.max_tools - count) {
            mcp_message_free(&resp);
            err = mcp_die(c, llmos_fail(LLMOS_ERR_LIMIT, "MCP: the server lists more than %zu "
                                                         "tools", c->limits.max_tools));
            break;
        }
        mcp_tool *grown = realloc(list, (count + more + 1) * sizeof *list);
        if (!grown) {
            mcp_message_free(&resp);
            err = llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory for the tool list");
            break;
        }
        list = grown;
        for (size_t i = 0; i < more && err == LLMOS_OK; i++) {
            memset(&list[count], 0, sizeof list[count]);
            err = mcp_take_tool(json_array_get(array, i), count, &list[count]);
            if (err == LLMOS_OK)
                count++; /* a failed entry holds nothing */
        }
        const char *next = ljson_get_string(resp.result, "nextCursor", NULL);
        if (err == LLMOS_OK && next && next[0]) {
            if (page >= 64)
                err = llmos_fail(LLMOS_ERR_LIMIT, "MCP: tools/list: more than 64 pages");
            else if (!(cursor = strdup(next)))
                err = llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory");
        }
        mcp_message_free(&resp);
        if (err != LLMOS_OK) {
            if (err == LLMOS_ERR_FORMAT || err == LLMOS_ERR_LIMIT)
                err = mcp_die(c, err);
            break;
        }
        if (!cursor)
            break;
    }
    free(cursor);
    if (err != LLMOS_OK) {
        mcp_tools_free(list, count);
        return err;
    }
    *tools = list;
    *n = count;
    return LLMOS_OK;
}

/* Append one content item of a tools/call result to text. */
static llmos_err mcp_content_text(json_t *item, size_t index, llmos_buf *text)
{
    const char *type = ljson_get_string(item, "type", NULL);
    if (!type)
        return llmos_fail(LLMOS_ERR_FORMAT, "MCP: tools/call content %zu has no \"type\"", index);
    if (index > 0) {
        llmos_err err = buf_putc(text, '\n');
        if (err != LLMOS_OK)
            return err;
    }
    if (strcmp(type, "text") == 0) {
        json_t *s = json_object_get(item, "text");
        if (!json_is_string(s))
            return llmos_fail(LLMOS_ERR_FORMAT, "MCP: tools/call content %zu: a text item "
                                                "without a string \"text\"", index);
        return buf_append(text, json_string_value(s), json_string_length(s));
    }
    if (strcmp(type, "image") == 0 || strcmp(type, "audio") == 0) {
        json_t *data = json_object_get(item, "data");
        return buf_printf(text, "[%s %.80s, %zu bytes of base64]", type,
                          ljson_get_string(item, "mimeType", "?"),
                          json_is_string(data) ? json_string_length(data) : (size_t)0);
    }
    if (strcmp(type, "resource_link") == 0)
        return buf_printf(text, "[resource link %.500s]", ljson_get_string(item, "uri", "?"));
    if (strcmp(type, "resource") == 0) {
        json_t *res = ljson_get_object(item, "resource");
        const char *body = ljson_get_string(res, "text", NULL);
        if (body)
            return buf_printf(text, "[resource %.500s]\n%s", ljson_get_string(res, "uri", "?"),
                              body);
        return buf_printf(text, "[resource %.500s, binary]", ljson_get_string(res, "uri", "?"));
    }
    return buf_printf(text, "[content of type %.40s]", type);
}

llmos_err mcp_call_tool(mcp_client *c, const char *name, const json_t *arguments,
                        llmos_buf *text, bool *is_error)
{
    *is_error = false;
    if (!name || !mcp_name_ok(name))
        return llmos_fail(LLMOS_ERR_INVALID, "MCP: tools/call: not a tool name: %.140s",
                          name ? name : "(null)");
    if (arguments && !json_is_object(arguments))
        return llmos_fail(LLMOS_ERR_INVALID, "MCP: tools/call %s: arguments must be an object",
                          name);
    json_t *params = arguments ? json_pack("{s:s, s:O}", "name", name, "arguments", arguments)
                               : json_pack("{s:s, s:{}}", "name", name, "arguments");
    if (!params)
        return llmos_fail(LLMOS_ERR_NOMEM, "MCP: out of memory for tools/call");
    mcp_message resp;
    llmos_err err = mcp_request(c, "tools/call", params, &resp);
    json_decref(params);
    if (err != LLMOS_OK)
        return err;
    json_t *content = ljson_get_array(resp.result, "content");
    json_t *flag = json_object_get(resp.result, "isError");
    if (!content || (flag && !json_is_boolean(flag))) {
        mcp_message_free(&resp);
        return mcp_die(c, llmos_fail(LLMOS_ERR_FORMAT, "MCP: tools/call %s: the result has no "
                                                       "\"content\" array", name));
    }
    for (size_t i = 0; i < json_array_size(content) && err == LLMOS_OK; i++)
        err = mcp_content_text(json_array_get(content, i), i, text);
    *is_error = flag && json_is_true(flag);
    mcp_message_free(&resp);
    if (err == LLMOS_ERR_FORMAT)
        return mcp_die(c, err);
    return err;
}

void mcp_close(mcp_client *c)
{
    if (!c)
        return;
    /* the stdio transport's shutdown: close its stdin, wait a little, then kill */
    mcp_close_fd(&c->in_fd);
    double until = mcp_now() + MCP_CLOSE_GRACE_S;
    while (c->pid > 0 && mcp_now() < until) {
        mcp_drain_stderr(c);
        /* exited? (not reaped yet, so its process group number cannot be reused before
           mcp_kill kills what it left behind there) */
        siginfo_t info = {0};
        if (waitid(P_PID, (id_t)c->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == c->pid)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    mcp_kill(c);
    buf_free(&c->line);
    free(c->err_tail);
    free(c);
}
