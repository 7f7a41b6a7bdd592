/*
 * fuzz_probes.c - fuzz the parser of `llmos scan`'s probe lines (scan_probe_parse): probe files
 * may come from anyone (--probes DIR), so they are outside bytes.
 *
 * Input: one line of bytes. An accepted probe has an id, family, channel with a tool, 1 to 16
 * parts and the fields its goal needs. Nothing may crash, leak or hang.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    scan_probe p;
    if (scan_probe_parse((const char *)data, size, "fuzz probe", &p) != LLMOS_OK) {
        llmos_err_clear();
        return 0;
    }
    if (!p.id || !p.family || !scan_channel_tool(p.channel) || p.n_parts < 1 || p.n_parts > 16)
        abort();
    if ((p.goal == SCAN_SAY && !p.marker) || (p.goal == SCAN_CALL && (!p.tool || !p.arguments)) ||
        (p.goal == SCAN_EXFIL && !p.url))
        abort();
    scan_probe_free(&p);
    return 0;
}
