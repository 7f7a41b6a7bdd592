/*
 * cmd_version.c - `llmos version`: version, build and CPU features.
 */
#include <stdio.h>

#include "cli/cli.h"

int cmd_version(int argc, char **argv)
{
    if (argc > 1)
        return cli_usage_error("version", "takes no arguments (got '%s')", argv[1]);
    const llmos_cpu *cpu = llmos_cpu_features();
    char feats[256];
    llmos_cpu_features_string(cpu, feats, sizeof feats);
    printf("llmos %s\n", LLMOS_VERSION);
    printf("build:    %s\n", LLMOS_BUILD_TYPE);
#if defined(__clang__)
    printf("compiler: clang %s\n", __clang_version__);
#elif defined(__GNUC__)
    printf("compiler: gcc %s\n", __VERSION__);
#else
    printf("compiler: unknown\n");
#endif
    printf("cpu:      %s, %d CPUs usable\n", cpu->brand, cpu->n_cpus);
    printf("features: %s\n", feats);
    return CLI_OK;
}
