/*
 * cmd_shell.c - `llmos` with no command (or `llmos shell`): the interactive shell, and
 * `llmos --model M "question"`, which answers once and exits.
 *
 * Brings llmos up for the shell (cli_boot.c): the model the options name (a local GGUF file or
 * an OpenAI-compatible server), a quarantined model beside it (by default a second context on
 * the same local model, or the same server; --quarantine-model FILE|URL to choose another), the
 * user's encrypted store and a kernel session. Every message then runs through the kernel, so
 * the model's tool calls are checked, audited system calls. With --no-store, or without a way
 * to get the passphrase, the session stands on a store that lives in memory only: still the
 * kernel, nothing kept. Without a model it prints the banner, the doctor's report, the commands
 * and exactly how to get a model, and exits 0: `make run` in a pipeline must never wait on
 * stdin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/backend.h"
#include "llmos/kernel.h"
#include "llmos/repl.h"
#include "llmos/memory.h"

static void print_no_model(void)
{
    printf("llmos %s - an operating system for language models\n\n", LLMOS_VERSION);
    fflush(stdout);
    (void)cmd_doctor(1, (char *[]){"doctor", NULL}); /* its problems are advice here */
    printf("\n");
    cmd_help(1, (char *[]){"help", NULL});
    printf(
        "\nThe shell needs a model, and none was given. Any of these works:\n\n"
        "  1. A local GGUF model (llama or qwen2 architecture). A small one to start with is\n"
        "     Qwen2.5-0.5B-Instruct in Q4_K_M (about 400 MB: the file\n"
        "     qwen2.5-0.5b-instruct-q4_k_m.gguf of the Qwen/Qwen2.5-0.5B-Instruct-GGUF model\n"
        "     repository), or SmolLM2-360M-Instruct as GGUF. Download it, then run\n"
        "         llmos --model qwen2.5-0.5b-instruct-q4_k_m.gguf\n"
        "     (or set LLMOS_MODEL=/path/to/model.gguf once and just run llmos).\n\n"
        "  2. A server that speaks the OpenAI-compatible API (llama.cpp's server, vLLM,\n"
        "     ollama, or another llmos running `llmos serve`):\n"
        "         llmos --api http://127.0.0.1:8080/v1 --api-model NAME\n"
        "     The API key, if the server wants one, is read from $LLMOS_API_KEY.\n\n"
        "  3. No download, to try the plumbing (the answers are random noise): make a\n"
        "     random-weight model with the vocabulary of any GGUF file, then chat with it:\n"
        "         llmos model make-random --dims 64,2,4,4,128 --vocab-from VOCAB.gguf tiny.gguf\n"
        "         llmos --model tiny.gguf\n\n"
        "Run 'llmos doctor' to check the installation and 'llmos --help' for all commands.\n");
}

/* The model at `where`: a URL opens a remote backend (api_model names the model there), a
 * file a local one. */
static llmos_err open_model(const char *where, const char *api_model, const char *key,
                            const local_backend_params *lp, llm_backend **out)
{
    if (strncmp(where, "http://", 7) == 0 || strncmp(where, "https://", 8) == 0) {
        remote_backend_params rp = remote_backend_default_params();
        rp.api_key = key && key[0] ? key : NULL;
        return remote_backend_open(where, api_model, &rp, out);
    }
    fprintf(stderr, "loading %s ...\n", where);
    return local_backend_open(where, lp, out);
}

/* Earlier versions kept the shell's history in <home>/history, in plaintext beside the
 * encrypted store. It now lives in the store; the old file is removed, once, saying so. */
static void forget_plaintext_history(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/history", cli_home());
    if (access(path, F_OK) == 0 && unlink(path) == 0)
        fprintf(stderr, "removed %s: the shell's history is now kept in your encrypted store\n",
                path);
}

int cmd_shell(int argc, char **argv)
{
    const char *model_path = getenv("LLMOS_MODEL");
    const char *api_url = NULL, *api_model = NULL, *key_env = NULL, *system = NULL;
    const char *quar = NULL, *quar_model = NULL, *embed_model = NULL;
    local_backend_params lp = local_backend_default_params();
    sampler_params sampling = sampler_default_params();
    int32_t max_tokens = 512;
    uint32_t caps = 0;
    bool no_store = false, no_guard = false;
    const char *guard_file = NULL;
    llmos_buf once = {0}; /* a message on the command line: answer it and exit */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--no-store") == 0) {
            no_store = true;
            continue;
        }
        if (strcmp(a, "--no-guard") == 0) {
            no_guard = true;
            continue;
        }
        if (a[0] != '-' || strcmp(a, "--") == 0) {
            if (strcmp(a, "--") == 0)
                i++;
            for (; i < argc; i++)
                if ((once.len && buf_putc(&once, ' ')) || buf_puts(&once, argv[i])) {
                    buf_free(&once);
                    return cli_report(LLMOS_ERR_NOMEM);
                }
            break;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(a, "--model") == 0 || strcmp(a, "--api") == 0 ||
                     strcmp(a, "--api-model") == 0 || strcmp(a, "--api-key-env") == 0 ||
                     strcmp(a, "--system") == 0 || strcmp(a, "-n") == 0 ||
                     strcmp(a, "--temp") == 0 || strcmp(a, "--seed") == 0 || strcmp(a, "-t") == 0 ||
                     strcmp(a, "--ctx") == 0 || strcmp(a, "--quarantine-model") == 0 ||
                     strcmp(a, "--quarantine-api-model") == 0 || strcmp(a, "--embed-model") == 0 ||
                     strcmp(a, "--guard") == 0 || strcmp(a, "--caps") == 0;
        if (!takes) {
            buf_free(&once);
            return cli_usage_error("shell", "unknown option '%s'", a);
        }
        if (!v) {
            buf_free(&once);
            return cli_usage_error("shell", "%s needs a value", a);
        }
        i++;
        char *end = NULL;
        if (strcmp(a, "--guard") == 0) {
            guard_file = v;
        } else if (strcmp(a, "--model") == 0) {
            model_path = v;
        } else if (strcmp(a, "--api") == 0) {
            api_url = v;
        } else if (strcmp(a, "--api-model") == 0) {
            api_model = v;
        } else if (strcmp(a, "--api-key-env") == 0) {
            key_env = v;
        } else if (strcmp(a, "--system") == 0) {
            system = v;
        } else if (strcmp(a, "--quarantine-model") == 0) {
            quar = v;
        } else if (strcmp(a, "--quarantine-api-model") == 0) {
            quar_model = v;
        } else if (strcmp(a, "--embed-model") == 0) {
            embed_model = v;
        } else if (strcmp(a, "--caps") == 0) {
            if (kcap_parse(v, &caps) || !caps) {
                buf_free(&once);
                return cli_usage_error("shell", "--caps: %s",
                                       caps ? llmos_errmsg() : "name at least one capability");
            }
        } else if (strcmp(a, "-n") == 0) {
            long n = strtol(v, &end, 10);
            if (*end || n <= 0 || n > 1000000)
                return cli_usage_error("shell", "-n takes a positive token count, not '%s'", v);
            max_tokens = (int32_t)n;
        } else if (strcmp(a, "--temp") == 0) {
            float t = strtof(v, &end);
            if (*end || t < 0)
                return cli_usage_error("shell", "--temp takes a number >= 0, not '%s'", v);
            sampling.temperature = t;
        } else if (strcmp(a, "--seed") == 0) {
            unsigned long long sd = strtoull(v, &end, 10);
            if (*end)
                return cli_usage_error("shell", "--seed takes an integer, not '%s'", v);
            sampling.seed = sd;
        } else if (strcmp(a, "-t") == 0) {
            long t = strtol(v, &end, 10);
            if (*end || t <= 0 || t > 4096)
                return cli_usage_error("shell", "-t takes a thread count, not '%s'", v);
            lp.n_threads = (int)t;
        } else {
            long c = strtol(v, &end, 10);
            if (*end || c <= 0 || c > 1 << 20)
                return cli_usage_error("shell", "--ctx takes a token count, not '%s'", v);
            lp.n_ctx = (uint32_t)c;
        }
    }
    int rc = CLI_OK;
    if (api_url && !api_model)
        rc = cli_usage_error("shell", "--api URL needs --api-model NAME too");
    else if (api_model && !api_url)
        rc = cli_usage_error("shell", "--api-model NAME needs --api URL too");
    else if (api_url && model_path && model_path != getenv("LLMOS_MODEL"))
        rc = cli_usage_error("shell", "give either --model FILE or --api URL, not both");
    else if (quar_model && !quar)
        rc = cli_usage_error("shell", "--quarantine-api-model NAME needs --quarantine-model URL");
    const char *key = getenv(key_env ? key_env : "LLMOS_API_KEY");
    if (!rc && key_env && (!key || !key[0]))
        rc = cli_usage_error("shell", "--api-key-env %s: that variable is not set", key_env);
    if (!rc && !api_url && (!model_path || !model_path[0])) {
        if (once.len)
            rc = cli_usage_error("shell", "a message needs a model: give --model FILE (or set "
                                          "LLMOS_MODEL) or --api URL --api-model NAME");
        else {
            print_no_model();
            model_path = cli_offer_default_model(); /* NULL unless the user pulled it */
        }
    }
    if (rc || (!api_url && (!model_path || !model_path[0]))) {
        buf_free(&once);
        return rc;
    }

    llmos_err rerr = api_url ? LLMOS_OK : cli_resolve_model(&model_path);
    if (!rerr && quar && strncmp(quar, "http", 4) != 0)
        rerr = cli_resolve_model(&quar);
    if (rerr) {
        buf_free(&once);
        return cli_report(rerr);
    }
    cli_boot_params bp = {.device = "shell",
                          .caps = caps,
                          .system_prompt = system,
                          .max_tokens = max_tokens,
                          .sampling = &sampling,
                          .embed = MEMORY_EMBED_NONE,
                          .guard_file = guard_file,
                          .no_guard = no_guard};
    llmos_err err = api_url ? open_model(api_url, api_model, key, &lp, &bp.privileged)
                            : open_model(model_path, NULL, NULL, &lp, &bp.privileged);
    /* the quarantined model: the one asked for, else the same model in a context of its own */
    if (!err && quar)
        err = open_model(quar, quar_model ? quar_model : api_model, key, &lp, &bp.quarantined);
    else if (!err && api_url)
        err = open_model(api_url, api_model, key, &lp, &bp.quarantined);
    else if (!err)
        err = local_backend_fork(bp.privileged, &bp.quarantined);
    /* archival memory's embedder: the one named, else the chat model's own embeddings */
    const char *embed_env = getenv("LLMOS_EMBED_MODEL");
    bp.embed = MEMORY_EMBED_DEFAULT;
    bp.embed_model = embed_model;
    bp.archival_optional = true;
    if (!err && !embed_model && !(embed_env && *embed_env))
        err = api_url ? open_model(api_url, api_model, key, &lp, &bp.embedder)
                      : local_backend_fork(bp.privileged, &bp.embedder);
    if (err) {
        llm_backend_free(bp.embedder);
        llm_backend_free(bp.quarantined);
        llm_backend_free(bp.privileged);
        buf_free(&once);
        return cli_report(err);
    }

    const char *passphrase = getenv("LLMOS_PASSPHRASE");
    bool can_ask = isatty(STDIN_FILENO);
    const char *banner = "Each message runs through the kernel: the model may call tools, every "
                         "call is checked and audited (/ps, /audit).";
    if (no_store) {
        bp.ephemeral = true;
        banner = "--no-store: each message runs through the kernel, on a store in memory only; "
                 "nothing is kept when the shell ends.";
    } else if ((!passphrase || !passphrase[0]) && !can_ask) {
        bp.ephemeral = true;
        banner = "No passphrase (set LLMOS_PASSPHRASE, or run on a terminal): the kernel runs on "
                 "a store in memory only; nothing is kept when the shell ends.";
    } else {
        bp.create = true;
    }
    /* installed specialists, as delegate(app, task); configured MCP servers, as mcp(...) */
    cli_extra_tools(&bp.extra_tools, &bp.n_extra_tools);
    cli_boot b;
    err = cli_boot_open(&bp, &b);
    if (err) {
        buf_free(&once);
        return cli_report(err);
    }
    if (*memory_note(b.mem))
        fprintf(stderr, "llmos: %s\n", memory_note(b.mem));
    repl_options ro = repl_default_options();
    ro.session = b.s;
    ro.banner = banner;
    ro.interactive = !once.len && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    ro.handle_sigint = true;
    if (ro.interactive) {
        ro.history = true;
        forget_plaintext_history();
        printf("llmos %s - an operating system for language models\n", LLMOS_VERSION);
    }
    repl *r = NULL;
    err = repl_new(&ro, &r);
    if (!err && once.len) {
        bool quit;
        err = repl_line(r, once.data, &quit);
    } else if (!err) {
        err = repl_run(r);
    }
    repl_free(r);
    cli_boot_close(&b);
    buf_free(&once);
    return err ? cli_report(err) : CLI_OK;
}
