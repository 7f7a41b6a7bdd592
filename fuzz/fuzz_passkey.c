/*
 * fuzz_passkey.c - fuzz the WebAuthn parsers (src/security/passkey.c): authenticator data, the
 * attestation object's CBOR and COSE keys, and client data, which any browser (or anyone
 * posting to /auth/passkey/...) sends.
 *
 * Input: the first byte chooses what the rest is: 0 authenticator data, 1 an attestation object
 * (with a fixed client data), 2 client data, 3 an assertion split at byte 1 of the rest (client
 * data, authenticator data and signature of lengths taken from the next bytes). Nothing may
 * crash, leak or read out of bounds; an accepted credential must have a known algorithm and a
 * key of its size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/passkey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t challenge[32] = {1, 2, 3};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 4;
    data++, size--;
    passkey_expect e = {.rp_id = "localhost",
                        .origin = "https://localhost:8443",
                        .challenge = challenge,
                        .challenge_len = sizeof challenge};
    static const char cd[] = "{\"type\":\"webauthn.create\",\"challenge\":"
                             "\"AQIDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
                             "\"origin\":\"https://localhost:8443\"}";
    if (mode == 0) {
        passkey_auth_data ad;
        if (passkey_parse_auth_data(data, size, &ad) == LLMOS_OK && ad.has_cred &&
            !((ad.cred.alg == PASSKEY_ES256 && ad.cred.pub_len == 65) ||
              (ad.cred.alg == PASSKEY_EDDSA && ad.cred.pub_len == 32)))
            abort();
    } else if (mode == 1) {
        passkey_cred c;
        if (passkey_register(&e, (const uint8_t *)cd, sizeof cd - 1, data, size, &c) == LLMOS_OK &&
            (c.id_len == 0 || c.id_len > PASSKEY_ID_MAX))
            abort();
    } else if (mode == 2) {
        llmos_err err = passkey_check_client_data(data, size, "webauthn.get", &e);
        (void)err;
    } else if (size >= 2) {
        size_t a = data[0] % (size - 1), b = data[1];
        data += 2, size -= 2;
        if (a > size)
            a = size;
        if (b > size - a)
            b = size - a;
        passkey_cred c = {.alg = PASSKEY_EDDSA, .pub_len = 32};
        llmos_err err =
            passkey_verify_assertion(&e, &c, data, a, data + a, b, data + a + b, size - a - b);
        if (err == LLMOS_OK)
            abort(); /* no signature can verify under a zero key */
    }
    return 0;
}
