/*
 * test_layers.c - the shape of the library, checked on the built archive and the sources:
 *
 *   names       every global symbol libllmos defines starts with its module's prefix (none in
 *               another library's, like jansson's json_ or ggml's, none unprefixed)
 *   visibility  the library is compiled with -fvisibility=hidden: every symbol left visible is
 *               declared in a public header (include/llmos), marked LLMOS_API
 *   layers      devices (src/io) reach llmos only through kernel sessions: they include no
 *               engine, store, memory or tool header and call no model, store or tool function;
 *               tools (src/tools) include no kernel internals
 *
 * Uses binutils (nm, readelf) on LLMOS_LIB and the sources under LLMOS_SRC, both set by ctest.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

/* The module prefixes (one per file or room: docs/architecture.md). */
static const char *const prefixes[] = {
    "llmos_",
    "arena_",
    "buf_",
    "utf8_",
    "pool_",
    "ljson_",
    "gguf_",
    "tok_",
    "quant_",
    "quantize_",
    "qpack_",
    "ops_",
    "model_",
    "gen_",
    "sampler_",
    "chat_",
    "jinja_",
    "toolcall_",
    "grammar_",
    "jschema_",
    "llm_",
    "local_",
    "remote_",
    "vfs_",
    "store_",
    "keys_",
    "vdb_",
    "memory_",
    "kernel_",
    "ksession_",
    "ksched_",
    "kturn_",
    "ksyscall",
    "kproc_",
    "kctx_",
    "kcap_",
    "kright_",
    "kevent_",
    "ktool_",
    "tool_",
    "calc_",
    "quarantine_",
    "untrusted_",
    "trusted_",
    "origin_",
    "policy_",
    "audit_",
    "apikeys_",
    "openai_",
    "http_server_",
    "repl_",
    "mctx_",
    "mpage_",
    /* one line per module added since, so that branches adding modules merge cleanly */
    "arch_",
    "bert_",
    "guard_",
    "scan_",
    "kguard_",
    "sandbox_",
    "browser_",
    "html_",
    "mcp_",
    "apps_",
    "auth_",
    "web_",
    "tlscert_",
    "voice_",
    "passkey_",
};

/* What a device must never call: the engine, the store, memory, tools, the kernel's insides. */
static const char *const device_forbidden[] = {
    "llm_chat",
    "llm_embed",
    "llm_count_tokens",
    "llm_context_size",
    "llm_model_name",
    "llm_backend_free",
    "local_backend_",
    "remote_backend_",
    "store_",
    "keys_",
    "vfs_",
    "vdb_",
    "memory_",
    "audit_",
    "kproc_load",
    "kproc_free",
    "kernel_syscall",
    "calc_",
    "tool_",
    "quarantine_",
    "policy_",
    "tok_",
    "model_",
    "gguf_",
    "grammar_",
    "sampler_",
    "gen_",
};

/* Headers a device may not include, and headers a tool may not include. */
static const char *const device_headers[] = {
    "llmos/backend.h", "llmos/storage.h",   "llmos/memory.h", "llmos/infer.h", "llmos/tools.h",
    "llmos/gguf.h",    "llmos/tokenizer.h", "llmos/vdb.h",    "infer/",        "storage/",
    "kernel/",         "memory/",           "tools/",
};
static const char *const tool_headers[] = {"kernel/", "storage/", "memory/", "llmos/storage.h",
                                           "llmos/backend.h"};

static bool starts_with_any(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(s, list[i], strlen(list[i])) == 0)
            return true;
    return false;
}

/* Run cmd and return its whole output (malloc'd). */
static char *run(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    llmos_buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), LLMOS_OK);
    int st = pclose(p);
    if (st != 0)
        fail_msg("'%s' failed (status %d)", cmd, st);
    return buf_detach(&b, NULL);
}

static const char *lib(void)
{
    const char *l = getenv("LLMOS_LIB");
    if (!l)
        tu_skip("LLMOS_LIB is not set (run the tests through ctest)");
    return l;
}

static const char *src(void)
{
    const char *s = getenv("LLMOS_SRC");
    if (!s)
        tu_skip("LLMOS_SRC is not set (run the tests through ctest)");
    return s;
}

/* All public headers, concatenated. */
static char *public_headers(void)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "cat '%s'/include/llmos/*.h", src());
    return run(cmd);
}

/* Is `name` a whole word of text? */
static bool has_word(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(text, name); p; p = strstr(p + 1, name)) {
        bool left =
            p == text || !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') ||
                           (p[-1] >= 'A' && p[-1] <= 'Z') || (p[-1] >= '0' && p[-1] <= '9'));
        char c = p[n];
        bool right = !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9'));
        if (left && right)
            return true;
    }
    return false;
}

static void test_names_and_visibility(void **state)
{
    (void)state;
    char cmd[4400];
    /* readelf -sW: Num Value Size Type Bind Vis Ndx Name */
    snprintf(cmd, sizeof cmd,
             "readelf -sW '%s' | awk '$5==\"GLOBAL\" && $7!=\"UND\" && $4!=\"SECTION\" "
             "{print $6, $8}' | sort -u",
             lib());
    char *syms = run(cmd);
    char *headers = public_headers();
    size_t total = 0, visible = 0, bad_names = 0, bad_vis = 0;
    for (char *line = strtok(syms, "\n"); line; line = strtok(NULL, "\n")) {
        char vis[32], name[512];
        if (sscanf(line, "%31s %511s", vis, name) != 2 || strncmp(name, "__", 2) == 0)
            continue; /* names the compiler makes (AddressSanitizer's __odr_asan.*) */
        total++;
        if (!starts_with_any(name, prefixes, LLMOS_ARRAY_LEN(prefixes))) {
            print_message("not a module prefix: %s\n", name);
            bad_names++;
        }
        if (strcmp(vis, "DEFAULT") == 0) {
            visible++;
            if (!has_word(headers, name)) {
                print_message("visible but in no public header: %s\n", name);
                bad_vis++;
            }
        }
    }
    print_message("%zu global symbols, %zu visible (LLMOS_API), %zu hidden\n", total, visible,
                  total - visible);
    assert_true(total > 400);
    assert_true(visible < total); /* -fvisibility=hidden is in effect */
    assert_int_equal(bad_names, 0);
    assert_int_equal(bad_vis, 0);
    free(syms);
    free(headers);
}

/* The #include lines of the .c files in src/<dir> that name something in `banned`. */
static size_t banned_includes(const char *dir, const char *const *banned, size_t n_banned)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/src/%s", src(), dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t bad = 0, files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 3 || strcmp(e->d_name + len - 2, ".c") != 0)
            continue;
        char file[4700];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        llmos_buf text = {0};
        assert_int_equal(llmos_file_read_all(file, 1 << 22, &text), LLMOS_OK);
        files++;
        for (char *l = strtok(text.data, "\n"); l; l = strtok(NULL, "\n")) {
            if (strncmp(l, "#include \"", 10) != 0)
                continue;
            for (size_t i = 0; i < n_banned; i++) {
                if (strncmp(l + 10, banned[i], strlen(banned[i])) == 0) {
                    print_message("src/%s/%s: %s\n", dir, e->d_name, l);
                    bad++;
                }
            }
        }
        buf_free(&text);
    }
    closedir(d);
    assert_true(files > 0);
    return bad;
}

static void test_devices_and_tools_keep_to_their_layer(void **state)
{
    (void)state;
    assert_int_equal(banned_includes("io", device_headers, LLMOS_ARRAY_LEN(device_headers)), 0);
    assert_int_equal(banned_includes("tools", tool_headers, LLMOS_ARRAY_LEN(tool_headers)), 0);
    /* and what the devices' object files call: nm -u per archive member */
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "nm -u '%s'", lib());
    char *out = run(cmd);
    const char *const devices[] = {"repl.c.o:", "http_server.c.o:", "openai_api.c.o:",
                                   "voice.c.o:", "voice_audio.c.o:", "voice_http.c.o:"};
    bool in_device = false;
    size_t members = 0, calls = 0, bad = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] == ':') {
            in_device = false;
            for (size_t i = 0; i < LLMOS_ARRAY_LEN(devices); i++)
                if (strcmp(line, devices[i]) == 0 || strstr(line, devices[i]) == line)
                    in_device = true;
            members += in_device;
            continue;
        }
        if (!in_device)
            continue;
        const char *sym = strrchr(line, ' ');
        sym = sym ? sym + 1 : line;
        calls++;
        if (starts_with_any(sym, device_forbidden, LLMOS_ARRAY_LEN(device_forbidden))) {
            print_message("a device calls %s\n", sym);
            bad++;
        }
    }
    print_message("%zu device objects, %zu outside calls checked\n", members, calls);
    assert_int_equal(members, LLMOS_ARRAY_LEN(devices));
    assert_true(calls > 50);
    assert_int_equal(bad, 0);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_visibility),
        cmocka_unit_test(test_devices_and_tools_keep_to_their_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
