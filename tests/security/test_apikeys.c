/*
 * test_apikeys.c - the HTTP server's keys file (src/security/apikeys.c): a good file parsed
 * into principals with rights, capabilities, limits and budgets; keys matched (and near misses
 * not); every kind of bad file refused with a message naming the entry and the member; keys
 * made and added to a file that holds only their digests, mode 0600, replaced on request,
 * never over a broken file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sodium.h>

#include "llmos/apikeys.h"
#include "testutil.h"

/* "blake2b-256:<hex>" of key, in out[80]. */
static void digest_of(const char *key, char *out)
{
    unsigned char h[APIKEY_HASH_BYTES];
    apikeys_hash(key, strlen(key), h);
    char hex[2 * APIKEY_HASH_BYTES + 1];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    snprintf(out, 80, "blake2b-256:%s", hex);
}

static void test_parse_and_match(void **state)
{
    (void)state;
    char ha[80], hb[80], text[2048];
    digest_of("key-of-alice", ha);
    digest_of("key-of-bob", hb);
    snprintf(text, sizeof text,
             "{\"version\": 1, \"keys\": ["
             "{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat\", \"embed\"],"
             " \"comment\": \"the web UI\", \"created\": \"2026-01-01T00:00:00Z\"},"
             "{\"principal\": \"bob@example.org\", \"key_hash\": \"%s\", \"rights\": [\"all\"],"
             " \"caps\": [\"compute\", \"read\"],"
             " \"limits\": {\"concurrent\": 2, \"requests_per_minute\": 30, \"max_tokens\": 512,"
             " \"tokens_per_minute\": 20000, \"priority\": 3},"
             " \"budget\": {\"tokens\": 1000, \"tool_calls\": 5, \"wall_s\": 60.5},"
             " \"turn\": {\"tool_calls\": 3}, \"audit_content\": true}]}",
             ha, hb);
    apikeys *ks = NULL;
    assert_int_equal(apikeys_parse(text, strlen(text), "keys.json", &ks), LLMOS_OK);
    assert_int_equal(apikeys_count(ks), 2);
    const apikey *a = apikeys_get(ks, 0), *b = apikeys_get(ks, 1);
    assert_string_equal(a->principal, "alice");
    assert_int_equal(a->rights, KRIGHT_CHAT | KRIGHT_EMBED);
    assert_int_equal(a->caps, KCAP_COMPUTE | KCAP_MESSAGE); /* the default */
    assert_int_equal(a->limits.requests_per_minute, 0);
    assert_false(a->audit_content);
    assert_string_equal(b->principal, "bob@example.org");
    assert_int_equal(b->rights, KRIGHT_ALL);
    assert_int_equal(b->caps, KCAP_COMPUTE | KCAP_READ);
    assert_int_equal(b->limits.concurrent, 2);
    assert_int_equal(b->limits.requests_per_minute, 30);
    assert_int_equal(b->limits.max_tokens, 512);
    assert_int_equal(b->limits.tokens_per_minute, 20000);
    assert_int_equal(b->limits.priority, 3);
    assert_int_equal(b->budget.tokens, 1000);
    assert_int_equal(b->budget.tool_calls, 5);
    assert_true(b->budget.wall_s == 60.5);
    assert_int_equal(b->turn.tool_calls, 3);
    assert_true(b->audit_content);

    assert_int_equal(apikeys_match(ks, "key-of-alice", 12), 0);
    assert_int_equal(apikeys_match(ks, "key-of-bob", 10), 1);
    assert_int_equal(apikeys_match(ks, "key-of-alicf", 12), -1);
    assert_int_equal(apikeys_match(ks, "key-of-alice", 11), -1); /* a prefix */
    assert_int_equal(apikeys_match(ks, "key-of-alice!", 13), -1);
    assert_int_equal(apikeys_match(ks, "", 0), -1);
    char huge[APIKEY_KEY_MAX + 2];
    memset(huge, 'k', sizeof huge);
    assert_int_equal(apikeys_match(ks, huge, sizeof huge), -1);
    apikeys_free(ks);
    apikeys_free(NULL);

    /* an empty list is a valid file (nobody may connect yet) */
    assert_int_equal(apikeys_parse("{\"keys\": []}", 12, "k", &ks), LLMOS_OK);
    assert_int_equal(apikeys_count(ks), 0);
    assert_int_equal(apikeys_match(ks, "x", 1), -1);
    apikeys_free(ks);
}

/* Each bad file: the error is LLMOS_ERR_FORMAT and names what is wrong, and where. */
static void test_errors_name_entry_and_member(void **state)
{
    (void)state;
    char h[80];
    digest_of("k", h);
    static const struct {
        const char *entry; /* %s: a good digest */
        const char *needle;
    } cases[] = {
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chta\"]}",
         "keys.json: entry 1 (alice): 'rights[0]': unknown right 'chta'"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": []}",
         "entry 1 (alice): 'rights' is empty"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": \"chat\"}",
         "entry 1 (alice): 'rights' must be an array of names, found a string"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat,embed\"]}",
         "entry 1 (alice): 'rights[0]' must be one name"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\"}", "entry 1 (alice): 'rights' must be"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat\"], \"caps\": "
         "[\"teleport\"]}",
         "entry 1 (alice): 'caps[0]': unknown capability 'teleport'"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat\"], \"limits\": "
         "{\"rpm\": 5}}",
         "entry 1 (alice): unknown member 'limits.rpm'"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat\"], \"limits\": "
         "{\"requests_per_minute\": -1}}",
         "'limits.requests_per_minute' must be a whole number from 0 to 100000"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat\"], \"limits\": "
         "{\"priority\": 10}}",
         "'limits.priority' must be a whole number from 0 to 9"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat\"], \"limits\": "
         "{\"concurrent\": 1.5}}",
         "'limits.concurrent' must be a whole number"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat\"], \"budget\": "
         "{\"wall_s\": -3}}",
         "entry 1 (alice): 'budget.wall_s' must be a number of seconds"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat\"], \"turn\": 5}",
         "entry 1 (alice): 'turn' must be an object, found an integer"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat\"], "
         "\"audit_content\": \"yes\"}",
         "entry 1 (alice): 'audit_content' must be true or false"},
        {"{\"principal\": \"alice\", \"key_hash\": \"%s\", \"rights\": [\"chat\"], \"key\": "
         "\"llmos-abc\"}",
         "entry 1 (alice): unknown member 'key' (expected principal, key_hash"},
        {"{\"principal\": \"al ice\", \"key_hash\": \"%s\", \"rights\": [\"chat\"]}",
         "entry 1: 'principal' 'al ice' is not a valid name"},
        {"{\"key_hash\": \"%s\", \"rights\": [\"chat\"]}", "entry 1: 'principal' is required"},
        {"[\"%s\"]", "entry 1: must be an object, found an array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char entry[1024], text[2048];
        snprintf(entry, sizeof entry, cases[i].entry, h);
        snprintf(text, sizeof text, "{\"keys\": [%s]}", entry);
        apikeys *ks = (apikeys *)1;
        llmos_err err = apikeys_parse(text, strlen(text), "keys.json", &ks);
        if (err != LLMOS_ERR_FORMAT || !strstr(llmos_errmsg(), cases[i].needle))
            fprintf(stderr, "case %zu: %s\n  got: %s\n  want: %s\n", i, text, llmos_errmsg(),
                    cases[i].needle);
        assert_int_equal(err, LLMOS_ERR_FORMAT);
        assert_null(ks);
        assert_non_null(strstr(llmos_errmsg(), cases[i].needle));
    }

    static const struct {
        const char *text, *needle;
    } files[] = {
        {"{\"keys\": [", "keys.json: line 1"},
        {"[]", "keys.json: must be a JSON object"},
        {"{\"keys\": {}}", "'keys' is required: an array of entries, found an object"},
        {"{}", "'keys' is required: an array of entries, found nothing"},
        {"{\"version\": 2, \"keys\": []}", "'version' must be 1"},
        {"{\"key\": []}", "keys.json: unknown member 'key' (expected version, keys)"},
        {"{\"keys\": [{\"principal\": \"a\", \"key_hash\": \"blake2b-256:00\", \"rights\": "
         "[\"chat\"]}]}",
         "entry 1 (a): 'key_hash' must be \"blake2b-256:\" followed by 64 lower-case hex"},
        {"{\"keys\": [{\"principal\": \"a\", \"key_hash\": \"sha1:00\", \"rights\": [\"chat\"]}]}",
         "entry 1 (a): 'key_hash' must be"},
        {"{\"keys\": [{\"principal\": \"a\", \"rights\": [\"chat\"]}]}",
         "entry 1 (a): 'key_hash' must be \"blake2b-256:\" followed by 64 lower-case hex digits "
         "(the digest `llmos key new` writes), found nothing"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        apikeys *ks = NULL;
        llmos_err err = apikeys_parse(files[i].text, strlen(files[i].text), "keys.json", &ks);
        if (err != LLMOS_ERR_FORMAT || !strstr(llmos_errmsg(), files[i].needle))
            fprintf(stderr, "file %zu: got: %s\n  want: %s\n", i, llmos_errmsg(), files[i].needle);
        assert_int_equal(err, LLMOS_ERR_FORMAT);
        assert_non_null(strstr(llmos_errmsg(), files[i].needle));
    }

    /* duplicates: a principal twice, a digest twice */
    char h2[80], text[2048];
    digest_of("k2", h2);
    snprintf(text, sizeof text,
             "{\"keys\": [{\"principal\": \"a\", \"key_hash\": \"%s\", \"rights\": [\"chat\"]},"
             "{\"principal\": \"a\", \"key_hash\": \"%s\", \"rights\": [\"chat\"]}]}",
             h, h2);
    apikeys *ks = NULL;
    assert_int_equal(apikeys_parse(text, strlen(text), "keys.json", &ks), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "entry 2 (a): principal 'a' already has entry 1"));
    snprintf(text, sizeof text,
             "{\"keys\": [{\"principal\": \"a\", \"key_hash\": \"%s\", \"rights\": [\"chat\"]},"
             "{\"principal\": \"b\", \"key_hash\": \"%s\", \"rights\": [\"chat\"]}]}",
             h, h);
    assert_int_equal(apikeys_parse(text, strlen(text), "keys.json", &ks), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "entry 2 (b): 'key_hash' is the same as entry 1's"));

    assert_int_equal(apikeys_load("/nonexistent/keys.json", &ks), LLMOS_ERR_NOT_FOUND);
    assert_non_null(strstr(llmos_errmsg(), "llmos key new"));
}

static void test_generate_and_add(void **state)
{
    (void)state;
    char k1[64], k2[64];
    assert_int_equal(apikeys_generate(k1, sizeof k1), LLMOS_OK);
    assert_int_equal(apikeys_generate(k2, sizeof k2), LLMOS_OK);
    assert_int_equal(strncmp(k1, APIKEY_PREFIX, strlen(APIKEY_PREFIX)), 0);
    assert_int_equal(strlen(k1), strlen(APIKEY_PREFIX) + 43); /* 256 bits in base64url */
    assert_int_equal(strspn(k1 + strlen(APIKEY_PREFIX), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
                                                        "nopqrstuvwxyz0123456789-_"),
                     43);
    assert_string_not_equal(k1, k2);
    char small[16];
    assert_int_equal(apikeys_generate(small, sizeof small), LLMOS_ERR_INVALID);

    char dir[256], path[512];
    assert_true(tu_mkdtemp("apikeys", dir, sizeof dir));
    snprintf(path, sizeof path, "%s/keys.json", dir);
    apikey e = {.principal = "alice",
                .rights = KRIGHT_CHAT | KRIGHT_PROCESS,
                .caps = KCAP_COMPUTE,
                .limits = {.requests_per_minute = 10}};
    apikeys_hash(k1, strlen(k1), e.hash);
    assert_int_equal(apikeys_add(path, &e, false), LLMOS_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    llmos_buf b = {0};
    assert_int_equal(llmos_file_read_all(path, 1 << 20, &b), LLMOS_OK);
    assert_null(strstr(b.data, k1)); /* the digest, never the key */
    assert_non_null(strstr(b.data, "\"requests_per_minute\": 10"));
    buf_free(&b);

    apikeys *ks = NULL;
    assert_int_equal(apikeys_load(path, &ks), LLMOS_OK);
    assert_int_equal(apikeys_count(ks), 1);
    assert_int_equal(apikeys_match(ks, k1, strlen(k1)), 0);
    assert_int_equal(apikeys_get(ks, 0)->rights, KRIGHT_CHAT | KRIGHT_PROCESS);
    assert_int_equal(apikeys_get(ks, 0)->caps, KCAP_COMPUTE);
    assert_int_equal(apikeys_get(ks, 0)->limits.requests_per_minute, 10);
    apikeys_free(ks);

    /* the same principal again: refused, unless replaced (the old key then fails) */
    apikeys_hash(k2, strlen(k2), e.hash);
    assert_int_equal(apikeys_add(path, &e, false), LLMOS_ERR_EXISTS);
    assert_non_null(strstr(llmos_errmsg(), "--replace"));
    apikey other = e;
    snprintf(other.principal, sizeof other.principal, "bob");
    unsigned char h3[APIKEY_HASH_BYTES];
    apikeys_hash("bob's key", 9, h3);
    memcpy(other.hash, h3, sizeof h3);
    assert_int_equal(apikeys_add(path, &other, false), LLMOS_OK);
    assert_int_equal(apikeys_add(path, &e, true), LLMOS_OK);
    assert_int_equal(apikeys_load(path, &ks), LLMOS_OK);
    assert_int_equal(apikeys_count(ks), 2);
    assert_int_equal(apikeys_match(ks, k1, strlen(k1)), -1);
    assert_int_equal(apikeys_match(ks, k2, strlen(k2)), 0);
    assert_int_equal(apikeys_match(ks, "bob's key", 9), 1);
    apikeys_free(ks);

    /* a broken file is reported and left as it is */
    static const char broken[] = "{\"keys\": [{\"principal\": \"x\"}]}";
    assert_int_equal(llmos_file_write_atomic(path, broken, sizeof broken - 1, 0600), LLMOS_OK);
    assert_int_equal(apikeys_add(path, &e, true), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "entry 1 (x)"));
    assert_int_equal(llmos_file_read_all(path, 1 << 20, &b), LLMOS_OK);
    assert_string_equal(b.data, broken);
    buf_free(&b);

    /* the --api-key shortcut */
    assert_int_equal(apikeys_single("s3cret", "api", KRIGHT_CHAT, &ks), LLMOS_OK);
    assert_int_equal(apikeys_match(ks, "s3cret", 6), 0);
    assert_string_equal(apikeys_get(ks, 0)->principal, "api");
    apikeys_free(ks);
    assert_int_equal(apikeys_single("", "api", KRIGHT_CHAT, &ks), LLMOS_ERR_INVALID);
    assert_int_equal(apikeys_single("k", "a b", KRIGHT_CHAT, &ks), LLMOS_ERR_INVALID);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_match),
        cmocka_unit_test(test_errors_name_entry_and_member),
        cmocka_unit_test(test_generate_and_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
