/*
 * keys.c - the key file of a store: a random data key wrapped under the user's passphrase.
 *
 * Key hierarchy: passphrase --Argon2id(salt, opslimit, memlimit)--> key-encryption key (KEK)
 * --XChaCha20-Poly1305--> wraps the 32-byte random data key --crypto_kdf--> page key (vfs.c).
 * Changing the passphrase rewraps the data key; no page is rewritten.
 *
 * The key file is one JSON object (docs/storage.md, "Key file"):
 *   {"format":"llmos-keyfile","version":1,"kdf":"argon2id13","opslimit":3,
 *    "memlimit":268435456,"salt":B64(16),"db_id":B64(16),"nonce":B64(24),"wrapped_key":B64(48)}
 * wrapped_key is the 32-byte ciphertext followed by the 16-byte tag. The associated data of
 * the wrap is "llmos-keyfile-v1" | db_id | opslimit (u64 LE) | memlimit (u64 LE), so changing
 * the id or the parameters in the file makes unwrapping fail like a wrong passphrase.
 *
 * Key material (KEK, data key) lives in sodium_malloc'd memory (locked, guarded) and is wiped
 * with sodium_memzero / sodium_free.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "llmos/json.h"
#include "llmos/storage.h"

#define KEYS_FORMAT         "llmos-keyfile"
#define KEYS_VERSION        1
#define KEYS_SALT_BYTES     crypto_pwhash_SALTBYTES /* 16 */
#define KEYS_DATA_KEY_BYTES 32
#define KEYS_NONCE_BYTES    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES /* 24 */
#define KEYS_WRAPPED_BYTES  (KEYS_DATA_KEY_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)
#define KEYS_MAX_FILE       4096
/* Bounds on parameters read from a file, so that a hostile key file cannot make us allocate
 * without limit: at most 16 passes and 4 GiB. */
#define KEYS_MAX_OPS 16
#define KEYS_MAX_MEM ((uint64_t)4 << 30)
/* The wrap's associated data: "llmos-keyfile-v1" | db_id | opslimit (u64) | memlimit (u64). */
#define KEYS_AD_BYTES (16 + 16 + 8 + 8)

/* The sizes the file format (docs/storage.md) writes down. */
_Static_assert(KEYS_SALT_BYTES == 16, "the key file's salt is 16 bytes");
_Static_assert(KEYS_NONCE_BYTES == 24, "the key file's nonce is 24 bytes");
_Static_assert(KEYS_WRAPPED_BYTES == 48, "the key file's wrapped_key is 32 + 16 bytes");
_Static_assert(KEYS_AD_BYTES == 48, "the wrap's associated data is 48 bytes");

keys_kdf keys_kdf_default(void)
{
    return (keys_kdf){crypto_pwhash_argon2id_OPSLIMIT_MODERATE,
                      crypto_pwhash_argon2id_MEMLIMIT_MODERATE};
}

llmos_err keys_kdf_parse(const char *name, keys_kdf *out)
{
    assert(out);
    if (!name || strcmp(name, "moderate") == 0) {
        *out = keys_kdf_default();
    } else if (strcmp(name, "interactive") == 0) {
        *out = (keys_kdf){crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE};
    } else if (strcmp(name, "sensitive") == 0) {
        *out = (keys_kdf){crypto_pwhash_argon2id_OPSLIMIT_SENSITIVE,
                          crypto_pwhash_argon2id_MEMLIMIT_SENSITIVE};
    } else if (strcmp(name, "test-weak") == 0) {
        *out = (keys_kdf){crypto_pwhash_argon2id_OPSLIMIT_MIN, crypto_pwhash_argon2id_MEMLIMIT_MIN};
    } else {
        return llmos_fail(LLMOS_ERR_INVALID,
                          "unknown key derivation setting '%s': use moderate, interactive, "
                          "sensitive or test-weak",
                          name);
    }
    return LLMOS_OK;
}

llmos_err keys_kdf_from_env(keys_kdf *out)
{
    assert(out);
    const char *env = getenv("LLMOS_KDF");
    llmos_err err = keys_kdf_parse(env && *env ? env : NULL, out);
    if (err)
        return llmos_fail_context(err, "LLMOS_KDF: ");
    return LLMOS_OK;
}

void keys_free(keys_unlocked *k)
{
    if (!k)
        return;
    sodium_free(k->data_key); /* wipes before unmapping */
    sodium_memzero(k, sizeof *k);
    free(k);
}

/* Associated data of the wrap (see the file comment). */
static void wrap_ad(uint8_t ad[KEYS_AD_BYTES], const uint8_t db_id[16], keys_kdf kdf)
{
    assert(ad && db_id);
    memcpy(ad, "llmos-keyfile-v1", 16); // NOLINT(bugprone-not-null-terminated-result): 16 bytes of
                                        // binary associated data, no terminator
    memcpy(ad + 16, db_id, 16);
    llmos_store_le64(ad + 32, kdf.opslimit);
    llmos_store_le64(ad + 40, (uint64_t)kdf.memlimit);
}

/* Argon2id parameters within libsodium's minimum and our bounds. */
static bool check_kdf_ok(keys_kdf kdf)
{
    return kdf.opslimit >= crypto_pwhash_argon2id_OPSLIMIT_MIN && kdf.opslimit <= KEYS_MAX_OPS &&
           kdf.memlimit >= crypto_pwhash_argon2id_MEMLIMIT_MIN && kdf.memlimit <= KEYS_MAX_MEM;
}

static llmos_err derive_kek(const char *passphrase, const uint8_t salt[KEYS_SALT_BYTES],
                            keys_kdf kdf, uint8_t **kek_out)
{
    assert(passphrase && salt && kek_out);
    assert(check_kdf_ok(kdf)); /* read from a file or named by the user: checked before */
    uint8_t *kek = sodium_malloc(32);
    if (!kek)
        return llmos_fail(LLMOS_ERR_NOMEM, "no locked memory for the key-encryption key");
    if (crypto_pwhash(kek, 32, passphrase, strlen(passphrase), salt, kdf.opslimit, kdf.memlimit,
                      crypto_pwhash_ALG_ARGON2ID13) != 0) {
        sodium_free(kek);
        return llmos_fail(LLMOS_ERR_NOMEM,
                          "Argon2id with %zu MiB failed (out of memory?); choose a lighter "
                          "setting with LLMOS_KDF=interactive",
                          kdf.memlimit >> 20);
    }
    *kek_out = kek;
    return LLMOS_OK;
}

static llmos_err check_kdf(keys_kdf kdf, const char *what)
{
    if (!check_kdf_ok(kdf))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "%s: Argon2id parameters opslimit=%llu memlimit=%zu out of range "
                          "(opslimit %u..%u, memlimit %u..%llu)",
                          what, (unsigned long long)kdf.opslimit, kdf.memlimit,
                          (unsigned)crypto_pwhash_argon2id_OPSLIMIT_MIN, KEYS_MAX_OPS,
                          (unsigned)crypto_pwhash_argon2id_MEMLIMIT_MIN,
                          (unsigned long long)KEYS_MAX_MEM);
    return LLMOS_OK;
}

static char *b64(const uint8_t *bin, size_t n)
{
    size_t len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(len);
    if (s)
        sodium_bin2base64(s, len, bin, n, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

/* Wrap data_key under passphrase and write the key file atomically. */
static llmos_err write_keyfile(const char *path, const char *passphrase, keys_kdf kdf,
                               const uint8_t *data_key, const uint8_t db_id[16])
{
    assert(path && passphrase && *passphrase && data_key && db_id);
    uint8_t salt[KEYS_SALT_BYTES], nonce[KEYS_NONCE_BYTES], wrapped[KEYS_WRAPPED_BYTES];
    uint8_t ad[KEYS_AD_BYTES];
    randombytes_buf(salt, sizeof salt);
    randombytes_buf(nonce, sizeof nonce);
    uint8_t *kek = NULL;
    llmos_err err = derive_kek(passphrase, salt, kdf, &kek);
    if (err)
        return err;
    wrap_ad(ad, db_id, kdf);
    unsigned long long clen = 0;
    /* kek is set when derive_kek returns 0 (llmos_fail returns its nonzero code, so this is
     * reached only on success) */
    // NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker)
    crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped, &clen, data_key, KEYS_DATA_KEY_BYTES, ad,
                                               sizeof ad, NULL, nonce, kek);
    sodium_free(kek);
    assert(clen == KEYS_WRAPPED_BYTES);

    char *s_salt = b64(salt, sizeof salt), *s_id = b64(db_id, 16),
         *s_nonce = b64(nonce, sizeof nonce), *s_wrapped = b64(wrapped, sizeof wrapped);
    json_t *obj = NULL;
    if (s_salt && s_id && s_nonce && s_wrapped)
        obj = json_pack("{s:s, s:i, s:s, s:I, s:I, s:s, s:s, s:s, s:s}", "format", KEYS_FORMAT,
                        "version", KEYS_VERSION, "kdf", "argon2id13", "opslimit",
                        (json_int_t)kdf.opslimit, "memlimit", (json_int_t)kdf.memlimit, "salt",
                        s_salt, "db_id", s_id, "nonce", s_nonce, "wrapped_key", s_wrapped);
    free(s_salt);
    free(s_id);
    free(s_nonce);
    free(s_wrapped);
    if (!obj)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the key file");
    llmos_buf out = {0};
    err = ljson_to_buf(obj, JSON_INDENT(2), &out);
    json_decref(obj);
    if (!err)
        err = buf_putc(&out, '\n');
    if (!err)
        err = llmos_file_write_atomic(path, out.data, out.len, 0600);
    buf_free(&out);
    return err;
}

llmos_err keys_create(const char *path, const char *passphrase, keys_kdf kdf, keys_unlocked **out)
{
    assert(path);
    if (out)
        *out = NULL;
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_CRYPTO, "libsodium failed to initialise");
    if (!passphrase || !*passphrase)
        return llmos_fail(LLMOS_ERR_INVALID, "%s: an empty passphrase is not allowed", path);
    llmos_err err = check_kdf(kdf, path);
    if (err)
        return err;
    struct stat st;
    if (stat(path, &st) == 0)
        return llmos_fail(LLMOS_ERR_EXISTS,
                          "%s: a key file already exists; refusing to replace "
                          "it (that would make its store unreadable)",
                          path);
    keys_unlocked *k = calloc(1, sizeof *k);
    if (!k)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for keys");
    k->data_key = sodium_malloc(KEYS_DATA_KEY_BYTES);
    if (!k->data_key) {
        free(k);
        return llmos_fail(LLMOS_ERR_NOMEM, "no locked memory for the data key");
    }
    crypto_aead_xchacha20poly1305_ietf_keygen(k->data_key);
    randombytes_buf(k->db_id, sizeof k->db_id);
    k->kdf = kdf;
    err = write_keyfile(path, passphrase, kdf, k->data_key, k->db_id);
    if (err || !out) {
        keys_free(k);
        return err;
    }
    *out = k;
    return LLMOS_OK;
}

/* Decode base64 member `key` of exactly n bytes. */
static llmos_err get_b64(const json_t *obj, const char *key, const char *path, uint8_t *bin,
                         size_t n)
{
    assert(obj && key && path && bin && n > 0);
    const char *s = NULL;
    llmos_err err = ljson_require_string(obj, key, path, &s);
    if (err)
        return err;
    size_t got = 0;
    if (sodium_base642bin(bin, n, s, strlen(s), NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL) !=
            0 ||
        got != n)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: member \"%s\" must be base64 of %zu bytes", path,
                          key, n);
    return LLMOS_OK;
}

typedef struct keyfile {
    keys_kdf kdf;
    uint8_t salt[KEYS_SALT_BYTES], db_id[16], nonce[KEYS_NONCE_BYTES], wrapped[KEYS_WRAPPED_BYTES];
} keyfile;

static llmos_err read_keyfile(const char *path, keyfile *kf)
{
    assert(path && kf);
    llmos_buf text = {0};
    llmos_err err = llmos_file_read_all(path, KEYS_MAX_FILE, &text);
    if (err) {
        buf_free(&text);
        if (err == LLMOS_ERR_NOT_FOUND)
            return llmos_fail(err, "%s: no key file (is this a store? create one first)", path);
        return err;
    }
    json_t *obj = NULL;
    err = ljson_parse_text(text.data, text.len, path, 8, &obj);
    buf_free(&text);
    if (err)
        return err;
    const char *format = ljson_get_string(obj, "format", "");
    int64_t version = ljson_get_int(obj, "version", -1);
    const char *kdf = ljson_get_string(obj, "kdf", "");
    int64_t ops = ljson_get_int(obj, "opslimit", -1), mem = ljson_get_int(obj, "memlimit", -1);
    if (strcmp(format, KEYS_FORMAT) != 0)
        err = llmos_fail(LLMOS_ERR_FORMAT, "%s: member \"format\" is \"%s\", expected \"%s\"", path,
                         format, KEYS_FORMAT);
    else if (version != KEYS_VERSION)
        err = llmos_fail(LLMOS_ERR_UNSUPPORTED,
                         "%s: key file version %lld; this llmos reads version %d", path,
                         (long long)version, KEYS_VERSION);
    else if (!*kdf)
        err = llmos_fail(LLMOS_ERR_FORMAT, "%s: member \"kdf\" is missing", path);
    else if (strcmp(kdf, "argon2id13") != 0)
        err = llmos_fail(LLMOS_ERR_UNSUPPORTED,
                         "%s: key derivation \"%s\" unknown (expected "
                         "\"argon2id13\")",
                         path, kdf);
    else if (ops < 0 || mem < 0)
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "%s: opslimit and memlimit must be present as "
                         "non-negative integers",
                         path);
    if (!err) {
        kf->kdf = (keys_kdf){(uint64_t)ops, (size_t)mem};
        err = check_kdf(kf->kdf, path);
    }
    if (!err)
        err = get_b64(obj, "salt", path, kf->salt, sizeof kf->salt);
    if (!err)
        err = get_b64(obj, "db_id", path, kf->db_id, sizeof kf->db_id);
    if (!err)
        err = get_b64(obj, "nonce", path, kf->nonce, sizeof kf->nonce);
    if (!err)
        err = get_b64(obj, "wrapped_key", path, kf->wrapped, sizeof kf->wrapped);
    json_decref(obj);
    return err;
}

llmos_err keys_unlock(const char *path, const char *passphrase, keys_unlocked **out)
{
    assert(path && out);
    *out = NULL;
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_CRYPTO, "libsodium failed to initialise");
    if (!passphrase)
        return llmos_fail(LLMOS_ERR_INVALID, "no passphrase given");
    keyfile kf = {0};
    llmos_err err = read_keyfile(path, &kf);
    if (err)
        return err;
    uint8_t *kek = NULL;
    err = derive_kek(passphrase, kf.salt, kf.kdf, &kek);
    if (err)
        return err;
    keys_unlocked *k = calloc(1, sizeof *k);
    uint8_t *dk = sodium_malloc(KEYS_DATA_KEY_BYTES);
    if (!k || !dk) {
        free(k);
        sodium_free(dk);
        sodium_free(kek);
        return llmos_fail(LLMOS_ERR_NOMEM, "no locked memory for the data key");
    }
    uint8_t ad[KEYS_AD_BYTES];
    wrap_ad(ad, kf.db_id, kf.kdf);
    unsigned long long mlen = 0;
    /* kek is set when derive_kek returns 0 */
    // NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker)
    int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
        dk, &mlen, NULL, kf.wrapped, sizeof kf.wrapped, ad, sizeof ad, kf.nonce, kek);
    sodium_free(kek);
    if (rc != 0 || mlen != KEYS_DATA_KEY_BYTES) {
        sodium_free(dk);
        free(k);
        return llmos_fail(LLMOS_ERR_AUTH,
                          "%s: wrong passphrase (or the key file was altered): the data key "
                          "does not unwrap",
                          path);
    }
    k->data_key = dk;
    memcpy(k->db_id, kf.db_id, sizeof k->db_id);
    k->kdf = kf.kdf;
    *out = k;
    return LLMOS_OK;
}

llmos_err keys_unlock_with_key(const char *path, const uint8_t *data_key, keys_unlocked **out)
{
    assert(path && out);
    *out = NULL;
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_CRYPTO, "libsodium failed to initialise");
    if (!data_key)
        return llmos_fail(LLMOS_ERR_INVALID, "no data key given");
    keyfile kf = {0};
    llmos_err err = read_keyfile(path, &kf);
    if (err)
        return err;
    keys_unlocked *k = calloc(1, sizeof *k);
    uint8_t *dk = sodium_malloc(KEYS_DATA_KEY_BYTES);
    if (!k || !dk) {
        free(k);
        sodium_free(dk);
        return llmos_fail(LLMOS_ERR_NOMEM, "no locked memory for the data key");
    }
    memcpy(dk, data_key, KEYS_DATA_KEY_BYTES);
    k->data_key = dk;
    memcpy(k->db_id, kf.db_id, sizeof k->db_id);
    k->kdf = kf.kdf;
    *out = k;
    return LLMOS_OK;
}

llmos_err keys_change_passphrase(const char *path, const char *old_passphrase,
                                 const char *new_passphrase, keys_kdf kdf)
{
    assert(path);
    if (!new_passphrase || !*new_passphrase)
        return llmos_fail(LLMOS_ERR_INVALID, "%s: an empty passphrase is not allowed", path);
    llmos_err err = check_kdf(kdf, path);
    if (err)
        return err;
    keys_unlocked *k = NULL;
    err = keys_unlock(path, old_passphrase, &k);
    if (err)
        return err;
    err = write_keyfile(
        /* k is set when keys_unlock returns 0 (llmos_fail returns its nonzero code, so this is
         * reached only on success) */
        // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
        path, new_passphrase, kdf, k->data_key, k->db_id);
    keys_free(k);
    return err;
}
