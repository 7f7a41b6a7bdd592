/*
 * main.c - the llmos program: dispatch argv[1] to a subcommand from the table.
 *
 * `llmos` alone starts the shell; `llmos --help` lists commands; `llmos --version` is an alias
 * of `llmos version`. An unknown command is an error that names the closest command.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void print_overview(void)
{
    printf("llmos - an operating system for language models\n\n"
           "usage: llmos [COMMAND] [ARGS...]\n\n"
           "Commands:\n");
    for (size_t i = 0; i < cli_n_commands; i++)
        printf("  %-10s %s\n", cli_commands[i].name, cli_commands[i].summary);
    printf("\nRun 'llmos help COMMAND' or 'llmos COMMAND --help' for details.\n\n"
           "Environment:\n"
           "  LLMOS_HOME     where user data lives (default ~/.local/share/llmos)\n"
           "  LLMOS_MODEL    the model of the shell and generate when no --model or --api\n"
           "  LLMOS_LOG      log level: debug, info, warn (default), error, off\n"
           "  LLMOS_THREADS  worker threads (default: the CPUs this process may use)\n\n"
           "Exit status: 0 success, 1 the operation failed, 2 bad command line,\n"
           "130 interrupted.\n");
}

int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        print_overview();
        return CLI_OK;
    }
    const cli_command *c = cli_find(argv[1]);
    if (!c) {
        const char *near = cli_closest(argv[1]);
        if (near)
            return cli_usage_error("help", "unknown command '%s'; did you mean '%s'?", argv[1],
                                   near);
        return cli_usage_error("help", "unknown command '%s'", argv[1]);
    }
    cli_print_help(c);
    return CLI_OK;
}

int main(int argc, char **argv)
{
    /* --allow-unsigned, for any command that loads an app (cli_resolve_model): taken out of
     * argv here, before a "--" */
    int kept = 1;
    bool after_dashes = false;
    for (int i = 1; i < argc; i++) {
        after_dashes |= strcmp(argv[i], "--") == 0;
        if (!after_dashes && strcmp(argv[i], "--allow-unsigned") == 0)
            cli_allow_unsigned = true;
        else
            argv[kept++] = argv[i];
    }
    argv[kept] = NULL;
    argc = kept;
    if (argc < 2)
        return cmd_shell(1, (char *[]){"shell", NULL});
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        print_overview();
        return CLI_OK;
    }
    if (strcmp(name, "--version") == 0)
        name = "version";
    /* `llmos --model FILE [MESSAGE]`, `llmos -n 8 ...`: options of the default command, the
     * shell (which also answers a message given after its options, once) */
    else if (name[0] == '-') {
        argv[0] = "shell";
        return cmd_shell(argc, argv);
    }
    const cli_command *c = cli_find(name);
    if (!c) {
        const char *near = cli_closest(name);
        fprintf(stderr, "llmos: unknown command '%s'.", name);
        if (near)
            fprintf(stderr, " Did you mean '%s'?", near);
        fprintf(stderr, "\nRun 'llmos --help' for the list of commands.\n");
        return CLI_USAGE;
    }
    if (c->run != cmd_help && cli_wants_help(argc - 1, argv + 1)) {
        cli_print_help(c);
        return CLI_OK;
    }
    return c->run(argc - 1, argv + 1);
}
