/*
 * test_keys.c - the key file: create, unlock, wrong passphrase, rewrap, tampering, parameters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "llmos/storage.h"

static char dir[64], path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/llmos-test-keys-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/store.key", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static keys_kdf weak(void)
{
    keys_kdf k;
    assert_int_equal(keys_kdf_parse("test-weak", &k), LLMOS_OK);
    return k;
}

static char *read_text(const char *p)
{
    FILE *fp = fopen(p, "rb");
    assert_non_null(fp);
    char *buf = calloc(1, 8192);
    size_t n = fread(buf, 1, 8191, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

static void write_text(const char *p, const char *text)
{
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_create_unlock(void **state)
{
    (void)state;
    keys_unlocked *a = NULL, *b = NULL;
    assert_int_equal(keys_create(path, "correct horse", weak(), &a), LLMOS_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(keys_unlock(path, "correct horse", &b), LLMOS_OK);
    assert_memory_equal(a->data_key, b->data_key, 32);
    assert_memory_equal(a->db_id, b->db_id, 16);
    assert_int_equal(b->kdf.opslimit, weak().opslimit);
    /* the key file does not hold the data key in clear */
    char *text = read_text(path);
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, a->data_key, 32, sodium_base64_VARIANT_ORIGINAL);
    assert_null(strstr(text, b64));
    assert_non_null(strstr(text, "\"argon2id13\""));
    free(text);
    keys_free(a);
    keys_free(b);
    keys_free(NULL);
    /* refuses to overwrite */
    assert_int_equal(keys_create(path, "x", weak(), NULL), LLMOS_ERR_EXISTS);
}

static void test_wrong_passphrase(void **state)
{
    (void)state;
    keys_unlocked *k = NULL;
    assert_int_equal(keys_create(path, "right", weak(), NULL), LLMOS_OK);
    assert_int_equal(keys_unlock(path, "wrong", &k), LLMOS_ERR_AUTH);
    assert_null(k);
    assert_non_null(strstr(llmos_errmsg(), "wrong passphrase"));
    assert_non_null(strstr(llmos_errmsg(), "store.key"));
    assert_int_equal(keys_unlock(path, "", &k), LLMOS_ERR_AUTH);
    assert_int_equal(keys_create(path, "", weak(), NULL), LLMOS_ERR_INVALID);
}

static void test_change_passphrase(void **state)
{
    (void)state;
    keys_unlocked *a = NULL, *b = NULL;
    assert_int_equal(keys_create(path, "old one", weak(), &a), LLMOS_OK);
    char *before = read_text(path);
    assert_int_equal(keys_change_passphrase(path, "not it", "new one", weak()), LLMOS_ERR_AUTH);
    char *same = read_text(path);
    assert_string_equal(before, same); /* a failed change leaves the file alone */
    assert_int_equal(keys_change_passphrase(path, "old one", "new one", weak()), LLMOS_OK);
    char *after = read_text(path);
    assert_string_not_equal(before, after);
    assert_int_equal(keys_unlock(path, "old one", &b), LLMOS_ERR_AUTH);
    assert_int_equal(keys_unlock(path, "new one", &b), LLMOS_OK);
    /* same data key and database id: nothing needs re-encrypting */
    assert_memory_equal(a->data_key, b->data_key, 32);
    assert_memory_equal(a->db_id, b->db_id, 16);
    assert_int_equal(keys_change_passphrase(path, "new one", "", weak()), LLMOS_ERR_INVALID);
    free(before);
    free(same);
    free(after);
    keys_free(a);
    keys_free(b);
}

/* Replace the first occurrence of `from` in the key file by `to`. */
static void edit_file(const char *from, const char *to)
{
    char *text = read_text(path);
    char *at = strstr(text, from);
    assert_non_null(at);
    char out[8192];
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    write_text(path, out);
    free(text);
}

static void test_tampered_key_file(void **state)
{
    (void)state;
    keys_unlocked *k = NULL;
    assert_int_equal(keys_create(path, "pw", weak(), NULL), LLMOS_OK);
    char *orig = read_text(path);

    /* parameters are bound to the wrap: a changed opslimit fails like a wrong passphrase */
    edit_file("\"opslimit\": 1", "\"opslimit\": 2");
    assert_int_equal(keys_unlock(path, "pw", &k), LLMOS_ERR_AUTH);
    write_text(path, orig);

    /* a different database id in the file does not unwrap either */
    char *id = strstr(orig, "\"db_id\": \"");
    assert_non_null(id);
    char one[2] = {id[10] == 'A' ? 'B' : 'A', 0}, was[2] = {id[10], 0};
    char from[32], to[32];
    snprintf(from, sizeof from, "\"db_id\": \"%s", was);
    snprintf(to, sizeof to, "\"db_id\": \"%s", one);
    edit_file(from, to);
    assert_int_equal(keys_unlock(path, "pw", &k), LLMOS_ERR_AUTH);
    write_text(path, orig);

    /* malformed files say what is wrong */
    write_text(path, "{\"format\":\"llmos-keyfile\",\"version\":1}");
    assert_int_equal(keys_unlock(path, "pw", &k), LLMOS_ERR_FORMAT);
    write_text(path, "not json");
    assert_int_equal(keys_unlock(path, "pw", &k), LLMOS_ERR_FORMAT);
    edit_file("not json", "{\"format\":\"llmos-keyfile\",\"version\":9}");
    assert_int_equal(keys_unlock(path, "pw", &k), LLMOS_ERR_UNSUPPORTED);
    /* a hostile memlimit is refused before any allocation */
    write_text(path, orig);
    edit_file("\"memlimit\": 8192", "\"memlimit\": 999999999999999");
    assert_int_equal(keys_unlock(path, "pw", &k), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "out of range"));
    write_text(path, orig);
    assert_int_equal(keys_unlock(path, "pw", &k), LLMOS_OK);
    keys_free(k);
    free(orig);
    unlink(path);
    assert_int_equal(keys_unlock(path, "pw", &k), LLMOS_ERR_NOT_FOUND);
}

static void test_kdf_settings(void **state)
{
    (void)state;
    keys_kdf k;
    assert_int_equal(keys_kdf_parse("moderate", &k), LLMOS_OK);
    assert_int_equal(k.opslimit, 3);
    assert_int_equal(k.memlimit, 256u << 20);
    keys_kdf d = keys_kdf_default();
    assert_int_equal(d.opslimit, k.opslimit);
    assert_int_equal(d.memlimit, k.memlimit);
    assert_int_equal(keys_kdf_parse("interactive", &k), LLMOS_OK);
    assert_int_equal(k.memlimit, 64u << 20);
    assert_int_equal(keys_kdf_parse("bogus", &k), LLMOS_ERR_INVALID);
    setenv("LLMOS_KDF", "test-weak", 1);
    assert_int_equal(keys_kdf_from_env(&k), LLMOS_OK);
    assert_int_equal(k.memlimit, weak().memlimit);
    setenv("LLMOS_KDF", "nonsense", 1);
    assert_int_equal(keys_kdf_from_env(&k), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "LLMOS_KDF"));
    unsetenv("LLMOS_KDF");
    assert_int_equal(keys_kdf_from_env(&k), LLMOS_OK);
    assert_int_equal(k.opslimit, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_unlock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_key_file, setup, teardown),
        cmocka_unit_test(test_kdf_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
