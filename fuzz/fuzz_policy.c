/*
 * fuzz_policy.c - fuzz the flow-policy parser and the quarantine's persisted form, both read
 * from files a user (or an attacker with write access to the config) controls.
 *
 * Input: policy JSON text, optionally followed by a NUL byte and quarantine JSON. An accepted
 * policy is asked about a fixed set of flows; an accepted quarantine substitutes its handles
 * into fixed arguments. Nothing may crash, leak or hang.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/security.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t policy_len = nul ? (size_t)(nul - text) : size;

    policy *p = NULL;
    if (policy_parse(text, policy_len, "fuzz policy", &p) == LLMOS_OK) {
        json_t *members = json_pack("{s:[s], s:[s,s], s:[]}", "recipient", "untrusted", "body",
                                    "user", "tool", "x");
        const char *tools[] = {"send_message", "shell", "calculator", "*", ""};
        for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
            llmos_err err = policy_check(p, tools[i], members);
            if (err != LLMOS_OK && err != LLMOS_ERR_DENIED)
                abort(); /* a check either allows or denies */
        }
        json_decref(members);
        policy_free(p);
    }

    if (nul) {
        json_t *j = NULL;
        const char *q_text = nul + 1;
        size_t q_len = size - policy_len - 1;
        if (ljson_parse_text(q_text, q_len, "fuzz quarantine", 64, &j) == LLMOS_OK) {
            quarantine *q = NULL;
            if (quarantine_from_json(j, &q) == LLMOS_OK) {
                json_t *args = json_pack("{s:s, s:[s], s:{s:s}}", "a", "$VAR1 and $VAR2", "b",
                                         "$VAR3", "c", "d", "$VAR10x");
                json_t *out = NULL, *members = NULL;
                if (quarantine_substitute(q, args, ORIGIN_USER, &out, &members) == LLMOS_OK) {
                    json_decref(out);
                    json_decref(members);
                }
                json_t *back = NULL;
                if (quarantine_to_json(q, &back) == LLMOS_OK)
                    json_decref(back);
                json_decref(args);
                quarantine_free(q);
            }
            json_decref(j);
        }
    }
    return 0;
}
