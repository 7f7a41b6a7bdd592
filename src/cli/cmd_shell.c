/*
 * cmd_shell.c - `llmos` with no command (or `llmos shell`): the interactive shell.
 *
 * Opens the model the options name (a local GGUF file or an OpenAI-compatible server) and
 * hands it to the shell loop in src/io/repl.c. With a passphrase at hand ($LLMOS_PASSPHRASE or
 * a terminal to ask on) it also opens the user's encrypted store and a kernel over the model,
 * so that each conversation is a kernel process whose tool calls are checked, audited system
 * calls; with --no-store, or no way to get the passphrase, the shell talks to the model
 * directly and says so. Without a model it prints the banner, the
 * doctor's report, the commands and exactly how to get a model, and exits 0: `make run` in a
 * pipeline must never wait on stdin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/backend.h"
#include "llmos/kernel.h"
#include "llmos/repl.h"
#include "llmos/storage.h"

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

int cmd_shell(int argc, char **argv)
{
    const char *model_path = getenv("LLMOS_MODEL");
    const char *api_url = NULL, *api_model = NULL, *key_env = NULL, *system = NULL;
    repl_options ro = repl_default_options();
    local_backend_params lp = local_backend_default_params();
    bool no_store = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--no-store") == 0) {
            no_store = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(a, "--model") == 0 || strcmp(a, "--api") == 0 ||
                     strcmp(a, "--api-model") == 0 || strcmp(a, "--api-key-env") == 0 ||
                     strcmp(a, "--system") == 0 || strcmp(a, "-n") == 0 ||
                     strcmp(a, "--temp") == 0 || strcmp(a, "--seed") == 0 || strcmp(a, "-t") == 0 ||
                     strcmp(a, "--ctx") == 0;
        if (!takes)
            return cli_usage_error("shell", "unknown option '%s'", a);
        if (!v)
            return cli_usage_error("shell", "%s needs a value", a);
        i++;
        char *end = NULL;
        if (strcmp(a, "--model") == 0) {
            model_path = v;
        } else if (strcmp(a, "--api") == 0) {
            api_url = v;
        } else if (strcmp(a, "--api-model") == 0) {
            api_model = v;
        } else if (strcmp(a, "--api-key-env") == 0) {
            key_env = v;
        } else if (strcmp(a, "--system") == 0) {
            system = v;
        } else if (strcmp(a, "-n") == 0) {
            long n = strtol(v, &end, 10);
            if (*end || n <= 0 || n > 1000000)
                return cli_usage_error("shell", "-n takes a positive token count, not '%s'", v);
            ro.max_tokens = (int32_t)n;
        } else if (strcmp(a, "--temp") == 0) {
            float t = strtof(v, &end);
            if (*end || t < 0)
                return cli_usage_error("shell", "--temp takes a number >= 0, not '%s'", v);
            ro.sampling.temperature = t;
        } else if (strcmp(a, "--seed") == 0) {
            unsigned long long s = strtoull(v, &end, 10);
            if (*end)
                return cli_usage_error("shell", "--seed takes an integer, not '%s'", v);
            ro.sampling.seed = s;
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
    if (api_url && !api_model)
        return cli_usage_error("shell", "--api URL needs --api-model NAME too");
    if (api_model && !api_url)
        return cli_usage_error("shell", "--api-model NAME needs --api URL too");
    if (api_url && model_path && model_path != getenv("LLMOS_MODEL"))
        return cli_usage_error("shell", "give either --model FILE or --api URL, not both");
    if (!api_url && (!model_path || !model_path[0])) {
        print_no_model();
        return CLI_OK;
    }

    llm_backend *b = NULL;
    llmos_err err;
    if (api_url) {
        const char *key = getenv(key_env ? key_env : "LLMOS_API_KEY");
        if (key_env && (!key || !key[0]))
            return cli_usage_error("shell", "--api-key-env %s: that variable is not set", key_env);
        remote_backend_params rp = remote_backend_default_params();
        rp.api_key = key && key[0] ? key : NULL;
        err = remote_backend_open(api_url, api_model, &rp, &b);
    } else {
        fprintf(stderr, "loading %s ...\n", model_path);
        err = local_backend_open(model_path, &lp, &b);
    }
    if (err)
        return cli_report(err);

    store *st = NULL;
    kernel *k = NULL;
    const char *passphrase = getenv("LLMOS_PASSPHRASE");
    if (no_store) {
        fprintf(stderr, "--no-store: chatting with the model directly (no tools, no audit)\n");
    } else if ((!passphrase || !passphrase[0]) && !isatty(STDIN_FILENO)) {
        fprintf(stderr, "no passphrase (set LLMOS_PASSPHRASE, or run on a terminal): chatting "
                        "with the model directly (no tools, no audit)\n");
    } else {
        err = open_user_store_with(NULL, false, &st);
        kernel_config kc = {0};
        kc.st = st;
        kc.privileged = b;
        kc.system_prompt = system;
        kc.max_tokens_per_turn = ro.max_tokens;
        if (!err)
            err = kernel_new(&kc, &k);
        if (err) {
            int rc = cli_report(err);
            store_close(st);
            llm_backend_free(b);
            return rc;
        }
        ro.kern = k;
        ro.st = st;
    }
    ro.backend = b;
    ro.system_prompt = system;
    ro.interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    ro.handle_sigint = true;
    char history[4096];
    if (ro.interactive) {
        const char *home = cli_home();
        if (llmos_file_mkdirs(home, 0700) == LLMOS_OK) {
            snprintf(history, sizeof history, "%s/history", home);
            ro.history_path = history;
        }
        printf("llmos %s - an operating system for language models\n", LLMOS_VERSION);
    }
    repl *r = NULL;
    err = repl_new(&ro, &r);
    if (!err)
        err = repl_run(r);
    repl_free(r);
    kernel_free(k);
    store_close(st);
    llm_backend_free(b);
    return err ? cli_report(err) : CLI_OK;
}
