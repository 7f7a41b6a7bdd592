/*
 * fuzz_manifest.c - fuzz what the app store reads from registries and files it does not
 * control: manifests (JSON, canonical form, paths, sizes, provenance), minisign signature
 * files, public keys, and trust policy files (src/apps/).
 *
 * Input: one selector byte, then the text. Selector % 4: 0 a manifest, 1 a .minisig file
 * (then verified against a fixed key over the text itself), 2 a public key, 3 a trust
 * policy. Nothing may crash, leak or hang; an accepted manifest must be canonical (its
 * canonical form is the input) and every file path in it must pass the path rules.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/apps.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 4) {
    case 0: {
        apps_manifest *m = NULL;
        if (apps_manifest_parse(text, len, &m) == LLMOS_OK) {
            llmos_buf b = {0};
            if (apps_canonical_json(m->json, &b) != LLMOS_OK || b.len != len ||
                memcmp(b.data, text, len) != 0)
                abort(); /* accepted bytes are the canonical form */
            for (size_t i = 0; i < m->n_files; i++)
                if (apps_path_check(m->files[i].path, "fuzz") != LLMOS_OK ||
                    m->files[i].size > APPS_MAX_FILE_SIZE)
                    abort();
            (void)apps_version_cmp(m->version, "1.0.0");
            buf_free(&b);
            apps_manifest_free(m);
        }
        break;
    }
    case 1: {
        apps_sig sig;
        if (apps_sig_parse(text, len, &sig) == LLMOS_OK) {
            apps_pubkey k = {{0}, {0}};
            memcpy(k.id, sig.keyid, 8);
            k.pk[0] = 1;
            if (apps_sig_verify(&sig, &k, text, len) == LLMOS_OK)
                abort(); /* no forgery against a key nobody holds */
        }
        break;
    }
    case 2: {
        apps_pubkey k;
        llmos_buf b = {0};
        if (apps_pubkey_parse(text, len, &k) == LLMOS_OK &&
            apps_pubkey_base64(&k, &b) == LLMOS_OK) {
            apps_pubkey again;
            if (apps_pubkey_parse(b.data, b.len, &again) != LLMOS_OK ||
                memcmp(&again, &k, sizeof k) != 0)
                abort(); /* what is written reads back */
        }
        buf_free(&b);
        break;
    }
    default: {
        apps_policy *p = NULL;
        if (apps_policy_parse(text, len, &p) == LLMOS_OK) {
            uint8_t id[8] = {0};
            (void)apps_policy_revoked(p, id);
            apps_policy_free(p);
        }
        break;
    }
    }
    llmos_err_clear();
    return 0;
}
