/*
 * cli.h - what the subcommands of the llmos program share.
 *
 * Every subcommand is one entry in the table in commands.c: a name, a one-line summary for
 * `llmos --help`, the full help text for `llmos help NAME` / `llmos NAME --help`, and a run
 * function. To add a command, write cmd_<name>.c with its run function, declare it below and
 * add one line to the table.
 *
 * Exit codes (documented in `llmos --help`): 0 success, 1 the operation failed, 2 the command
 * line was wrong, 130 interrupted.
 */
#ifndef LLMOS_CLI_H
#define LLMOS_CLI_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <stdint.h>

#include "llmos/base.h"
#include "llmos/infer.h"

enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2, CLI_INTERRUPTED = 130 };

typedef struct cli_command {
    const char *name;
    const char *summary;               /* one line, no final period */
    const char *help;                  /* full text: usage line, description, options */
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command;

extern const cli_command cli_commands[];
extern const size_t cli_n_commands;

const cli_command *cli_find(const char *name);
/* The command name nearest to `name` by edit distance, or NULL if nothing is close. */
const char *cli_closest(const char *name);
/* True when argv[1..] holds -h or --help (before a "--"). */
bool cli_wants_help(int argc, char **argv);
void cli_print_help(const cli_command *c);
/* Print "llmos CMD: <msg>" and a pointer to the help; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) LLMOS_PRINTF(2, 3);
/* Print "llmos: error: <detail message>"; returns CLI_FAILED. LLMOS_ERR_CANCELLED (which a
 * command gets only after cli_catch_sigint's Ctrl-C) prints "llmos: interrupted: <detail>"
 * and returns CLI_INTERRUPTED. */
int cli_report(llmos_err err);
/* For commands that write large files: from now on the first SIGINT (Ctrl-C) sets the flag
 * returned, which the command hands to the library (gguf_writer_set_cancel, quantize_params)
 * so that the write stops, removes its temporary file and fails with LLMOS_ERR_CANCELLED; a
 * second SIGINT ends the program at once, as if no handler were installed. */
const atomic_bool *cli_catch_sigint(void);
/* Where user data lives: $LLMOS_HOME, else $XDG_DATA_HOME/llmos, else ~/.local/share/llmos.
 * Returns a static string. */
const char *cli_home(void);
/* ---- booting the kernel for a command (cli_boot.c) ------------------------------------------
 * A command that talks to llmos opens the user's memory (the encrypted store, or one in memory
 * only), a kernel over it and the model backends, and a session for the local user, who owns
 * the store and holds every right. Everything it does then goes through that session. */
struct memory;
struct kernel;
struct ksession;
struct llm_backend;
struct ktool;

typedef struct cli_boot_params {
    const char *device;      /* "shell", "cli", "serve": in the audit's login record */
    bool create;             /* create the store when missing (asks the passphrase twice) */
    bool ephemeral;          /* a store in memory only (the shell's --no-store) */
    bool start_over;         /* a store whose database is gone starts over (memory reset) */
    int embed;               /* memory_embed: MEMORY_EMBED_NONE unless memory is searched */
    const char *embed_model; /* GGUF file of the embedder, or "lexical" (--embed-model) */
    const char *embed_fallback_model; /* nothing named, a store not lexical: this model's */
    struct llm_backend *embedder;     /* nothing named: embed with this one (owned; the shell's
                                         model as a fork) */
    bool archival_optional;           /* no usable embedder: archival memory off, not an error */
    struct llm_backend *privileged;   /* the model (owned by the boot from here on; may be NULL) */
    struct llm_backend *quarantined;  /* the quarantined model (owned; may be NULL) */
    const char *system_prompt;        /* NULL = the kernel's */
    int32_t max_tokens;               /* per model call; 0 = the kernel's */
    const sampler_params *sampling;   /* NULL = the backend's defaults */
    uint32_t caps;    /* of the session's processes; 0 = compute,message,quarantine */
    size_t max_queue; /* model requests that may wait; 0 = the kernel's */
    const char *guard_file; /* the output guard's policy (--guard FILE); NULL = built-in */
    bool no_guard;          /* --no-guard: no output guard */
    const struct ktool *extra_tools; /* more tools for the kernel (delegate): an array that
                                        outlives the boot, or NULL */
    size_t n_extra_tools;
} cli_boot_params;

typedef struct cli_boot {
    struct memory *mem;
    struct kernel *k;
    struct ksession *s;
    struct llm_backend *privileged, *quarantined, *embedder;
    struct guard *guard; /* from --guard FILE (owned), NULL for the built-in policy */
    char workspaces[4200]; /* <home>/workspaces: the processes' workspaces (docs/tools.md) */
} cli_boot;

/* Open memory, kernel and session as p says. The passphrase comes from $LLMOS_PASSPHRASE or a
 * prompt on the terminal (no echo; Ctrl-C cancels). On failure everything is closed, the
 * backends included. */
LLMOS_NODISCARD llmos_err cli_boot_open(const cli_boot_params *p, cli_boot *out);
void cli_boot_close(cli_boot *b);

/* A size in bytes: a whole number with an optional suffix K, M, G (powers of 1024; "512M",
 * "2G"). LLMOS_ERR_INVALID naming the text otherwise. */
LLMOS_NODISCARD llmos_err cli_parse_size(const char *text, size_t *out);

/* A model to call: a local GGUF file, or an OpenAI-compatible server at an http(s) URL (its
 * model name api_model; the key from $key_env, default LLMOS_API_KEY). */
LLMOS_NODISCARD llmos_err cli_open_backend(const char *where, const char *api_model,
                                           const char *key_env, struct llm_backend **out);

/* ---- the app store (cli_apps.c) -------------------------------------------------------------
 * --allow-unsigned, anywhere on the command line (main.c takes it out of argv): unsigned apps
 * and local files load even where the trust policy asks for signatures. */
extern bool cli_allow_unsigned;
/* --model ARG as a file to load: a store name (NAME[:TAG]) or a path into the store is
 * verified (signature, trust policy, every file's SHA-256) and *arg becomes the model file in
 * the store; a local path stays as it is, recorded as unsigned (refused when the trust policy
 * says `local-files refuse`, unless --allow-unsigned). A failed check refuses, naming it. */
LLMOS_NODISCARD llmos_err cli_resolve_model(const char **arg);
/* What cli_resolve_model checked, one line each, for the audit log (cli_boot_open). */
size_t cli_model_checks(const char *const **out);
/* The progress of a pull on standard error: a line redrawn on a terminal, else a plain line
 * every 10%. */
typedef struct cli_progress_state {
    bool tty, started;
    int next_pct;
    uint64_t start_done;
} cli_progress_state;
struct apps_progress;
void cli_progress(const struct apps_progress *p, void *ctx);
/* For a user with no model (the shell's no-model page, make run): name the default model
 * ($LLMOS_DEFAULT_MODEL, else qwen2.5-0.5b-instruct) with its size as the registry
 * ($LLMOS_REGISTRY, else the one built in) declares it, and on a terminal offer to pull it.
 * Where no registry is set or reachable: one line saying what to do. Returns the name to run
 * when it was pulled, else NULL. Never reads standard input unless it is a terminal. */
const char *cli_offer_default_model(void);
/* The registry to pull from: $LLMOS_REGISTRY, else the one built in (LLMOS_DEFAULT_REGISTRY),
 * else NULL. */
const char *cli_registry(void);

/* the commands */
int cmd_help(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_shell(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_model_random(int argc, char **argv);   /* llmos model make-random */
int cmd_model_quantize(int argc, char **argv); /* llmos model quantize */
int cmd_bench(int argc, char **argv);
int cmd_memory(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_kill(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_guard(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_mcp(int argc, char **argv); /* cmd_mcp.c: the user's MCP servers */
/* The extra system calls of the shell and serve (cmd_mcp.c): delegate and mcp, those there is
 * something to offer for; *out is a static array of *n (NULL when none). */
void cli_extra_tools(const struct ktool **out, size_t *n);

/* the app store's commands (cmd_apps.c), with their help texts */
int cmd_pull(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_registry(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_delegate(int argc, char **argv);
/* The delegate system call offered to the shell's and serve's model when specialists are
 * installed (cli_apps.c): the tool in *out, or nothing (no specialist, no store). */
void cli_delegate_tool(const struct ktool **out);
extern const char cmd_pull_help[], cmd_list_help[], cmd_show_help[], cmd_rm_help[],
    cmd_verify_help[], cmd_sign_help[], cmd_keys_help[], cmd_publish_help[], cmd_registry_help[],
    cmd_run_help[], cmd_delegate_help[];
int cmd_user(int argc, char **argv);
int cmd_voice(int argc, char **argv);

#endif
