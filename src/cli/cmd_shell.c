/*
 * cmd_shell.c - `llmos` with no command: the interactive shell.
 *
 * The shell proper (line editing, streaming answers, slash commands) arrives with the kernel;
 * until a model backend exists it greets the user, runs the doctor and shows the commands.
 */
#include <stdio.h>

#include "cli/cli.h"

int cmd_shell(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return cli_usage_error("shell", "takes no arguments yet (got '%s')", argv[1]);
    printf("llmos %s - an operating system for language models\n\n", LLMOS_VERSION);
    int rc = cmd_doctor(1, (char *[]){"doctor", NULL});
    printf("\n");
    cmd_help(1, (char *[]){"help", NULL});
    return rc;
}
