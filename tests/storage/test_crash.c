/*
 * test_crash.c - crash safety: a child process writes small transactions to the store and is
 * killed with SIGKILL at a random moment; the store must then open, pass the integrity check
 * (SQLite's and every page's authentication) and hold every transaction the child saw commit,
 * each one whole.
 *
 * The stores keep a freshness record (fresh.c), which the child moves forward after every
 * other commit: a store refused at reopen as older than its record would be a record that ran
 * ahead of what was committed.
 *
 * The child reports a transaction through a pipe only after COMMIT returned. 200 rounds by
 * default (a few seconds); LLMOS_CRASH_ROUNDS=N for a long run (`make crash`: 1000). The last
 * line counts the committed (acknowledged) transactions lost over all rounds, which must be 0.
 * LLMOS_CRASH_SEED fixes the random delays. fsync is switched off (store_options.no_fsync) to keep
 * the test fast: a killed process loses nothing the kernel already has, so this tests SQLite's and
 * the VFS's atomicity against process death, not against power loss.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmos/memory.h"
#include "llmos/storage.h"

#define MAX_TXN 100000

static char dir[96], fresh[96];

static store_options opts(void)
{
    store_options o = {.embedder = memory_lexical_embedder(),
                       .wal_autocheckpoint = 16,
                       .no_fsync = true,
                       .freshness_dir = fresh};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    return o;
}

/* Messages in transaction t: 1 to 3. */
static int txn_size(int t)
{
    return 1 + t % 3;
}

/* The child: commit transactions forever, reporting each after COMMIT returns. */
static void child(int round, int fd)
{
    store_options o = opts();
    store *s = NULL;
    if (store_open(dir, "crash pw", &o, &s))
        _exit(3);
    char conv[32], text[96];
    snprintf(conv, sizeof conv, "round%d", round);
    int32_t ready = 0; /* tell the parent the store is open */
    if (write(fd, &ready, sizeof ready) != sizeof ready)
        _exit(8);
    for (int32_t t = 1;; t++) {
        if (store_begin(s))
            _exit(4);
        for (int m = 0; m < txn_size(t); m++) {
            snprintf(text, sizeof text, "t%d m%d of %d filler words to make the rows longer", t, m,
                     txn_size(t));
            if (store_message_add(s, "user", conv, "user", text, 0, NULL))
                _exit(5);
        }
        if (t % 5 == 0 && store_archival_add(s, "user", text, NULL, NULL))
            _exit(6);
        /* an audit record moves the freshness record after the commit: a kill between the
         * two must leave it behind the store, never ahead (check_round reopens with it) */
        uint8_t h[32] = {(uint8_t)t};
        store_audit_record rec = {.kind = "test", .payload = "{}", .hash = h, .hash_len = 32};
        if (t % 2 == 0 && store_audit_append(s, &rec, NULL))
            _exit(9);
        if (store_commit(s))
            _exit(7);
        if (write(fd, &t, sizeof t) != sizeof t)
            _exit(8);
    }
}

/* Open the store after round `round` was killed with `acked` transactions acknowledged, check
 * it, and return how many acknowledged transactions are lost (missing, or not whole). Anything
 * else wrong (the store does not open or verify, a transaction beyond the one in flight, a
 * partial one in flight) fails the test at once. */
static int check_round(int round, int32_t acked)
{
    store_options o = opts();
    store *s = NULL;
    llmos_err err = store_open(dir, "crash pw", &o, &s);
    if (err)
        fail_msg("round %d: store_open after kill: %s", round, llmos_errmsg());
    err = store_verify(s);
    if (err)
        fail_msg("round %d: verify after kill: %s", round, llmos_errmsg());
    char conv[32];
    snprintf(conv, sizeof conv, "round%d", round);
    store_search_opts so = {.conversation = conv, .limit = 3 * MAX_TXN};
    store_message *m = NULL;
    size_t n = 0;
    err = store_message_search(s, "", &so, &m, &n);
    if (err)
        fail_msg("round %d: search: %s", round, llmos_errmsg());
    static int count[MAX_TXN + 2];
    memset(count, 0, sizeof count);
    int32_t max_seen = 0;
    for (size_t i = 0; i < n; i++) {
        int t = 0, j = 0, k = 0;
        assert_int_equal(sscanf(m[i].content, "t%d m%d of %d", &t, &j, &k), 3);
        assert_true(t >= 1 && t <= MAX_TXN);
        count[t]++;
        if (t > max_seen)
            max_seen = t;
    }
    store_messages_free(m, n);
    /* every acknowledged transaction is there, whole */
    int lost = 0;
    for (int32_t t = 1; t <= acked; t++)
        if (count[t] != txn_size(t)) {
            fprintf(stderr, "round %d: acknowledged transaction %d has %d of %d messages\n", round,
                    t, count[t], txn_size(t));
            lost++;
        }
    /* at most the one in flight beyond that, and whole too */
    if (max_seen > acked + 1)
        fail_msg("round %d: transaction %d present but only %d acknowledged", round, max_seen,
                 acked);
    if (max_seen == acked + 1 && count[max_seen] != txn_size(max_seen))
        fail_msg("round %d: unacknowledged transaction %d is partial (%d of %d)", round, max_seen,
                 count[max_seen], txn_size(max_seen));
    store_close(s);
    return lost;
}

static void test_kill_rounds(void **state)
{
    (void)state;
    int rounds = 200;
    const char *env = getenv("LLMOS_CRASH_ROUNDS");
    if (env && atoi(env) > 0)
        rounds = atoi(env);
    unsigned seed = (unsigned)time(NULL);
    env = getenv("LLMOS_CRASH_SEED");
    if (env)
        seed = (unsigned)strtoul(env, NULL, 10);
    srand(seed);
    printf("crash test: %d rounds, seed %u\n", rounds, seed);

    char base[64];
    snprintf(base, sizeof base, "/tmp/llmos-test-crash-XXXXXX");
    assert_non_null(mkdtemp(base));
    snprintf(fresh, sizeof fresh, "%s/freshness", base);

    double t_start = llmos_time_now();
    long total_acked = 0, total_lost = 0;
    double check_s = 0;
    int rounds_with_commits = 0;
    for (int r = 0; r < rounds; r++) {
        if (r % 10 == 0) { /* a fresh store now and then keeps the per-round checks cheap */
            snprintf(dir, sizeof dir, "%s/s%d", base, r / 10);
            store_options o = opts();
            store *s = NULL;
            assert_int_equal(store_open(dir, "crash pw", &o, &s), LLMOS_OK);
            store_close(s);
        }
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child(r, fds[1]);
        }
        close(fds[1]);
        /* One round in eight is killed while opening (perhaps during WAL recovery). The others
         * wait until the child has acknowledged 0 to 10 transactions, then up to 2 ms more, so
         * the kill lands at a random point of a commit or checkpoint however fast the build. */
        int32_t acked = 0, t;
        bool during_open = rand() % 8 == 0;
        int target = rand() % 11;
        if (!during_open) {
            if (read(fds[0], &t, sizeof t) != sizeof t || t != 0)
                fail_msg("round %d: the child died before opening the store", r);
            while (acked < target && read(fds[0], &t, sizeof t) == sizeof t) {
                assert_int_equal(t, acked + 1);
                acked = t;
            }
        }
        struct timespec ts = {0, (long)(rand() % (during_open ? 3000 : 2000)) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (WIFEXITED(st))
            fail_msg("round %d: the child failed by itself with status %d", r, WEXITSTATUS(st));
        ssize_t got;
        while ((got = read(fds[0], &t, sizeof t)) == sizeof t) {
            if (t == 0)
                continue; /* the "store is open" marker */
            assert_int_equal(t, acked + 1);
            acked = t;
        }
        close(fds[0]);
        total_acked += acked;
        rounds_with_commits += acked > 0;
        double t_check = llmos_time_now();
        total_lost += check_round(r, acked);
        check_s += llmos_time_now() - t_check;
    }
    printf("crash test: %ld acknowledged transactions over %d rounds (%d with commits), %ld "
           "committed transactions lost\n",
           total_acked, rounds, rounds_with_commits, total_lost);
    assert_int_equal(total_lost, 0);
    /* the test means something only if kills landed after commits in most rounds */
    assert_true(rounds_with_commits > rounds / 2);
    printf("crash test: %.1f s, of which %.1f s checking the store after kills\n",
           llmos_time_now() - t_start, check_s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_rounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
