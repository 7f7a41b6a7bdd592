/*
 * test_kvswitch.c - the scheduler and the engine's batching through the kernel, with the real
 * tiny model (stories260K): the kernel takes its slots from the backend (llm_max_concurrent);
 * every model call carries its principal as cache scope, so a principal reuses its own prefix
 * and never another's; a session that closes keeps its principal's KV cache in the store and
 * one that opens later, over a fresh backend, gives it back (the first answer then reuses it,
 * and is the same answer); a corrupted snapshot and one of another model are refused, audited
 * and forgotten.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "llmos/backend.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "llmos/storage.h"
#include "testutil.h"

typedef struct rig {
    memory *mem; /* outlives the kernels: what one kept, the next finds */
    llm_backend *b;
    kernel *k;
    ksession *alice, *bob;
} rig;

static void backend_open(rig *r)
{
    char model[4096];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    local_backend_params lp = local_backend_default_params();
    lp.n_ctx = 256;
    lp.n_threads = 1;
    lp.max_seqs = 2;
    assert_int_equal(local_backend_open(model, &lp, &r->b), LLMOS_OK);
}

static void kernel_up(rig *r)
{
    backend_open(r);
    kernel_config c = {.st = memory_store(r->mem), .privileged = r->b, .keep_kv = true};
    assert_int_equal(kernel_new(&c, &r->k), LLMOS_OK);
    ksession_params p = {.principal = "alice", .device = "test", .rights = KRIGHT_ALL};
    assert_int_equal(ksession_open(r->k, &p, &r->alice), LLMOS_OK);
    p.principal = "bob";
    assert_int_equal(ksession_open(r->k, &p, &r->bob), LLMOS_OK);
}

static void kernel_down(rig *r)
{
    ksession_close(r->alice);
    ksession_close(r->bob);
    kernel_free(r->k);
    llm_backend_free(r->b);
    r->alice = r->bob = NULL;
    r->k = NULL;
    r->b = NULL;
}

/* One greedy chat of `text`; the answer's text into out (malloc'd) and its cached tokens. */
static uint32_t chat(ksession *s, const char *text, char **out)
{
    json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", text);
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    rq.max_tokens = 8;
    rq.sampling.temperature = 0;
    llm_response resp = {0};
    assert_int_equal(ksession_chat(s, &rq, NULL, NULL, &resp), LLMOS_OK);
    uint32_t cached = resp.cached_tokens;
    if (out)
        *out = strdup(resp.content);
    llm_response_free(&resp);
    json_decref(msgs);
    return cached;
}

typedef struct restores {
    int ok, refused;
    char reason[512];
} restores;

static bool count_restores(const store_audit_record *rec, void *ctx)
{
    restores *r = ctx;
    if (strcmp(rec->kind, "kv.restore") != 0)
        return true;
    if (strstr(rec->payload, "\"status\":\"ok\"") || strstr(rec->payload, "\"status\": \"ok\"")) {
        r->ok++;
    } else {
        r->refused++;
        snprintf(r->reason, sizeof r->reason, "%s", rec->payload);
    }
    return true;
}

static restores audit_restores(ksession *s)
{
    restores r = {0};
    assert_int_equal(ksession_audit(s, 1, count_restores, &r), LLMOS_OK);
    return r;
}

static const char story[] = "Once upon a time there was a little cat who liked to play in the "
                            "garden with her friends every day.";

static void test_slots_and_scopes(void **state)
{
    (void)state;
    rig r = {0};
    assert_int_equal(memory_open_ephemeral(&r.mem), LLMOS_OK);
    kernel_up(&r);
    ksched_stats st = kernel_sched_stats(r.k);
    assert_int_equal(st.slots, 2); /* the backend's max_seqs */
    assert_true(st.engine);
    assert_true(st.kv_budget > 0);
    char *first = NULL, *again = NULL, *bobs = NULL;
    assert_int_equal(chat(r.alice, story, &first), 0);
    /* alice again: her own prefix is reused, and the answer is the same */
    uint32_t cached = chat(r.alice, story, &again);
    print_message("alice's second request reused %u prompt tokens\n", cached);
    assert_true(cached > 10);
    assert_string_equal(first, again);
    /* bob asks the same: nothing of alice's is shared with him */
    assert_int_equal(chat(r.bob, story, &bobs), 0);
    assert_string_equal(first, bobs);
    assert_true(kernel_sched_stats(r.k).cached_tokens >= cached);
    free(first);
    free(again);
    free(bobs);
    kernel_down(&r);
    memory_close(r.mem);
}

static void test_kept_across_restarts(void **state)
{
    (void)state;
    rig r = {0};
    assert_int_equal(memory_open_ephemeral(&r.mem), LLMOS_OK);
    kernel_up(&r);
    char *first = NULL, *later = NULL;
    chat(r.alice, story, &first);
    kernel_down(&r); /* alice's session closes: her cache goes to the store */
    store_snapshot sn;
    assert_int_equal(store_snapshot_get(memory_store(r.mem), "alice", "kv", &sn), LLMOS_OK);
    assert_true(sn.tokens > 10);
    assert_int_equal(strlen(sn.model), 64);
    store_snapshot_clear(&sn);
    /* bob said nothing: nothing kept for him */
    assert_int_equal(store_snapshot_get(memory_store(r.mem), "bob", "kv", &sn),
                     LLMOS_ERR_NOT_FOUND);

    /* a fresh backend and kernel: alice's first request starts from her kept cache */
    kernel_up(&r);
    assert_int_equal(audit_restores(r.alice).ok, 1);
    uint32_t cached = chat(r.alice, story, &later);
    print_message("after the restart alice's first request reused %u prompt tokens\n", cached);
    assert_true(cached > 10);
    assert_string_equal(first, later);
    free(first);
    free(later);
    kernel_down(&r);
    memory_close(r.mem);
}

/* Rewrite alice's kept snapshot: flip a byte (corrupt) or change the model digest and make the
 * checksum fit again (another model's). */
static void tamper(memory *mem, bool foreign)
{
    store *st = memory_store(mem);
    store_snapshot sn;
    assert_int_equal(store_snapshot_get(st, "alice", "kv", &sn), LLMOS_OK);
    assert_true(sn.len > 16 + 32 + 32);
    if (foreign) {
        sn.data[16] ^= 0xff; /* the digest starts at byte 16 */
        crypto_hash_sha256(sn.data + sn.len - 32, sn.data, sn.len - 32);
    } else {
        sn.data[sn.len / 2] ^= 0x01;
    }
    assert_int_equal(store_snapshot_put(st, "alice", "kv", sn.model, sn.tokens, sn.data, sn.len),
                     LLMOS_OK);
    store_snapshot_clear(&sn);
}

static void test_refused_snapshots(void **state)
{
    (void)state;
    for (int foreign = 0; foreign <= 1; foreign++) {
        rig r = {0};
        assert_int_equal(memory_open_ephemeral(&r.mem), LLMOS_OK);
        kernel_up(&r);
        chat(r.alice, story, NULL);
        kernel_down(&r);
        tamper(r.mem, foreign);
        kernel_up(&r);
        restores rs = audit_restores(r.alice);
        print_message("%s snapshot: %s\n", foreign ? "another model's" : "a corrupted", rs.reason);
        assert_int_equal(rs.ok, 0);
        assert_int_equal(rs.refused, 1);
        assert_non_null(strstr(rs.reason, foreign ? "digest" : "checksum"));
        /* refused once, forgotten: never tried again, and nothing of it is used */
        store_snapshot sn;
        assert_int_equal(store_snapshot_get(memory_store(r.mem), "alice", "kv", &sn),
                         LLMOS_ERR_NOT_FOUND);
        assert_int_equal(chat(r.alice, story, NULL), 0);
        kernel_down(&r);
        memory_close(r.mem);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots_and_scopes),
        cmocka_unit_test(test_kept_across_restarts),
        cmocka_unit_test(test_refused_snapshots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
