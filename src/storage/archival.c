/*
 * archival.c - archival memory: passages with embeddings, found by nearest-neighbour search.
 *
 * Each passage is a row of the archival table with its embedding as a BLOB of little-endian
 * float32 (unit length, so cosine similarity is a dot product) and the name of the embedder
 * that made it; a store never compares vectors of different embedders. Search is hybrid: the
 * passages nearest to the query's embedding (an HNSW index once there are many, exact below)
 * and the passages that share its words (BM25 over the archival_fts table) are merged by
 * reciprocal rank fusion, so that a rare word the embedder blurs ("dentist") still finds its
 * passage, and a paraphrase with no word in common still finds its own.
 */
#include <assert.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/vdb.h"
#include "storage/store_internal.h"

/* Embed with the store's embedder and scale to unit length (zero stays zero). */
static llmos_err embed_unit(store *s, const char *text, float **out)
{
    assert(store_is_open(s) && text && out);
    *out = NULL;
    if (!s->emb)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "this store was opened without an embedder; archival memory needs one");
    assert(s->emb->dim > 0 && s->emb->embed);
    float *v = calloc(s->emb->dim, sizeof *v);
    if (!v)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for an embedding");
    llmos_err err = s->emb->embed(s->emb->ctx, text, v);
    if (err) {
        free(v);
        return llmos_fail_context(err, "embedding with %s: ", s->emb->name);
    }
    double norm = 0;
    for (uint32_t i = 0; i < s->emb->dim; i++) {
        if (!isfinite(v[i])) {
            free(v);
            return llmos_fail(LLMOS_ERR_INVALID, "embedder %s returned a non-finite value at %u",
                              s->emb->name, i);
        }
        norm += (double)v[i] * v[i];
    }
    if (norm > 0) {
        float inv = (float)(1.0 / sqrt(norm));
        for (uint32_t i = 0; i < s->emb->dim; i++)
            v[i] *= inv;
    }
    *out = v;
    return LLMOS_OK;
}

/* ---- the HNSW index ------------------------------------------------------------------------
 *
 * One vdb (cosine metric) over the archival rows of the store's embedder, keyed by row id. It
 * is saved (vdb_save) into the vector_index table when the store closes after a change, and
 * loaded at open when its signature still matches the rows: count, sum and maximum of their
 * ids. Ids are never reused (AUTOINCREMENT), so any add moves the maximum and any delete the
 * count: no sequence of changes leaves the signature as it was. A mismatch (another process wrote,
 * a transaction was rolled back, a crash came before the save) rebuilds the index from the stored
 * embeddings. vdb answers exactly (brute force) while the collection is small
 * (vdb_params.exact_below), by graph search beyond.
 */

/* The signature of a set of archival rows: count, sum and maximum of their ids. */
typedef struct vsig {
    int64_t count, max;
    double sum;
    bool valid; /* false: unknown, never matches */
} vsig;

typedef struct vindex {
    vdb *idx;
    vsig sig;   /* signature of the rows the index holds */
    bool dirty; /* changed since loaded or saved */
} vindex;

static bool sig_equal(const vsig *a, const vsig *b)
{
    return a->valid && b->valid && a->count == b->count && a->max == b->max && a->sum == b->sum;
}

/* Text form stored in vector_index.signature. */
static void sig_text(const vsig *g, char out[96])
{
    snprintf(out, 96, "%lld:%.0f:%lld", (long long)g->count, g->sum, (long long)g->max);
}

#define VINDEX_NAME "archival"
/* Layer-0 candidates of a search: at 100,000 lexical vectors vdb's default (64) found 85% of
 * the true top 10 (bench/memory); 128 costs little beside reading the passages. */
#define VINDEX_EF 128

/* The signature of the archival rows of the store's embedder (a scan of the
 * archival_by_embedder index). */
static llmos_err rows_signature(store *s, vsig *sig)
{
    assert(store_is_open(s) && s->emb && sig);
    sig->valid = false;
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "SELECT count(*), total(id), coalesce(max(id), 0) FROM archival"
                                  " WHERE embedder = ?1",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, s->emb->name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *sig = (vsig){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 2),
                      sqlite3_column_double(st, 1), true};
    else
        err = store_db_fail(s, rc, "reading the archival signature");
    sqlite3_finalize(st);
    return err;
}

static bool nonzero(const float *v, uint32_t dim)
{
    for (uint32_t i = 0; i < dim; i++)
        if (v[i] != 0) // NOLINT(clang-analyzer-core.NullDereference): embed_unit sets its vector
                       // when it returns 0 (llmos_fail returns its nonzero code)
            return true;
    return false;
}

/* Build vi->idx afresh from the stored embeddings. */
static llmos_err vindex_build(store *s, vindex *vi)
{
    assert(store_is_open(s) && s->emb && vi);
    vdb_free(vi->idx);
    vi->idx = NULL;
    llmos_err err = rows_signature(s, &vi->sig);
    if (!err) {
        vdb_params params = vdb_params_default();
        params.ef_construction = 100; /* lighter than the default 200: faster rebuilds */
        err = vdb_new(s->emb->dim, VDB_COSINE, &params, &vi->idx);
    }
    sqlite3_stmt *st = NULL;
    if (!err)
        err = store_prepare(s, "SELECT id, embedding FROM archival WHERE embedder = ?1", &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, s->emb->name, -1, SQLITE_STATIC);
    size_t want = s->emb->dim * sizeof(float);
    int rc;
    while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const float *v = sqlite3_column_blob(st, 1);
        if ((size_t)sqlite3_column_bytes(st, 1) == want && v && nonzero(v, s->emb->dim))
            err = vdb_insert(vi->idx, (uint64_t)sqlite3_column_int64(st, 0), v);
    }
    if (!err && rc != SQLITE_DONE)
        err = store_db_fail(s, rc, "reading embeddings for the vector index");
    sqlite3_finalize(st);
    vi->dirty = true;
    return err;
}

/* Load the saved index if it matches the rows; true on success. */
static bool vindex_load(store *s, vindex *vi)
{
    assert(store_is_open(s) && s->emb && vi && !vi->idx);
    sqlite3_stmt *st = NULL;
    if (store_prepare(s, "SELECT embedder, dim, signature, data FROM vector_index WHERE name = ?1",
                      &st))
        return false;
    sqlite3_bind_text(st, 1, VINDEX_NAME, -1, SQLITE_STATIC);
    bool ok = false;
    char sig[96];
    sig_text(&vi->sig, sig);
    if (sqlite3_step(st) == SQLITE_ROW &&
        strcmp((const char *)sqlite3_column_text(st, 0), s->emb->name) == 0 &&
        sqlite3_column_int64(st, 1) == s->emb->dim &&
        strcmp((const char *)sqlite3_column_text(st, 2), sig) == 0) {
        vdb *idx = NULL;
        llmos_err err =
            vdb_load(sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3), &idx);
        if (!err && vdb_dim(idx) == s->emb->dim) {
            vi->idx = idx;
            ok = true;
        } else {
            LOG_WARN("storage", "%s: saved vector index unusable (%s); rebuilding it", s->db_path,
                     err ? llmos_errmsg() : "dimension differs");
            vdb_free(idx);
        }
    }
    sqlite3_finalize(st);
    return ok;
}

llmos_err store_vindex_open(store *s)
{
    assert(s && s->db && !s->vindex);
    s->vindex = NULL;
    if (!s->emb)
        return LLMOS_OK;
    vindex *vi = calloc(1, sizeof *vi);
    if (!vi)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the vector index");
    llmos_err err = rows_signature(s, &vi->sig);
    if (!err && !vindex_load(s, vi))
        err = vindex_build(s, vi);
    if (err) {
        vdb_free(vi->idx);
        free(vi);
        return llmos_fail_context(err, "opening the archival vector index: ");
    }
    s->vindex = vi;
    return LLMOS_OK;
}

/* Save the index into the database when it changed. */
static llmos_err vindex_save(store *s, vindex *vi)
{
    assert(store_is_open(s) && s->emb && vi);
    llmos_buf data = {0};
    llmos_err err = vdb_save(vi->idx, &data);
    sqlite3_stmt *st = NULL;
    if (!err)
        err = store_prepare(s,
                            "INSERT OR REPLACE INTO vector_index(name, embedder, dim, count,"
                            " signature, data, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            &st);
    if (!err) {
        sqlite3_bind_text(st, 1, VINDEX_NAME, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, s->emb->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, s->emb->dim);
        char sig[96];
        sig_text(&vi->sig, sig);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)vdb_count(vi->idx));
        sqlite3_bind_text(st, 5, sig, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob64(st, 6, data.data, data.len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, store_now());
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
            err = store_db_fail(s, rc, "saving the vector index");
        sqlite3_finalize(st);
    }
    buf_free(&data);
    if (!err)
        vi->dirty = false;
    return err;
}

void store_vindex_close(store *s)
{
    assert(s);
    vindex *vi = s->vindex;
    if (!vi)
        return;
    if (vi->dirty && s->db && sqlite3_get_autocommit(s->db)) {
        /* only when the index matches what is committed */
        vsig sig;
        if (rows_signature(s, &sig) == LLMOS_OK && sig_equal(&sig, &vi->sig) &&
            vindex_save(s, vi) != LLMOS_OK)
            LOG_WARN("storage", "%s: %s (the index will be rebuilt at the next open)", s->db_path,
                     llmos_errmsg());
    }
    vdb_free(vi->idx);
    free(vi);
    s->vindex = NULL;
}

bool store_vindex_active(store *s)
{
    assert(store_is_open(s));
    return s->vindex != NULL;
}

/* After a row was added or deleted by this handle: the index follows, and so does its
 * signature. Any failure just makes the next search rebuild. */
static void vindex_note(store *s, int64_t id, const float *v, bool added)
{
    vindex *vi = s->vindex;
    if (!vi)
        return;
    assert(store_is_open(s));
    llmos_err err = LLMOS_OK;
    if (added && v && nonzero(v, s->emb->dim))
        err = vdb_insert(vi->idx, (uint64_t)id, v);
    else if (!added && vdb_contains(vi->idx, (uint64_t)id))
        err = vdb_delete(vi->idx, (uint64_t)id);
    vsig *g = &vi->sig;
    if (added) {
        g->count++;
        g->sum += (double)id;
        if (id > g->max)
            g->max = id;
    } else {
        g->count--;
        g->sum -= (double)id;
        if (id == g->max && rows_signature(s, g))
            g->valid = false;
    }
    if (err)
        g->valid = false; /* never matches: the next search rebuilds */
    vi->dirty = true;
}

/* ---- passages ----------------------------------------------------------------------------- */

llmos_err store_archival_add(store *s, const char *principal, const char *text,
                             const char *metadata, int64_t *id)
{
    assert(store_is_open(s));
    if (!principal || !*principal || !text)
        return llmos_fail(LLMOS_ERR_INVALID, "an archival passage needs a principal and text");
    float *v = NULL;
    llmos_err err = embed_unit(s, text, &v);
    if (err)
        return err;
    sqlite3_stmt *st = NULL;
    err = store_prepare(s,
                        "INSERT INTO archival(text, embedding, embedder, metadata, created_at,"
                        " updated_at, principal) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                        &st);
    if (!err) {
        int64_t now = store_now();
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, v, (int)(s->emb->dim * sizeof *v), SQLITE_STATIC);
        sqlite3_bind_text(st, 3, s->emb->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, metadata ? metadata : "{}", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, now);
        sqlite3_bind_text(st, 6, principal, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) {
            if ((rc & 0xff) == SQLITE_CONSTRAINT)
                err = llmos_fail(LLMOS_ERR_INVALID,
                                 "archival metadata must be a JSON object as text: %s",
                                 metadata ? metadata : "");
            else
                err = store_db_fail(s, rc, "adding an archival passage");
        }
        sqlite3_finalize(st);
    }
    if (!err) {
        int64_t rowid = sqlite3_last_insert_rowid(s->db);
        vindex_note(s, rowid, v, true);
        if (id)
            *id = rowid;
    }
    free(v);
    return err;
}

static llmos_err fetch_row(store *s, const char *principal, int64_t id, store_archival *out)
{
    assert(store_is_open(s) && principal && out);
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "SELECT text, metadata, created_at, updated_at FROM archival"
                                  " WHERE id = ?1 AND principal = ?2",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, principal, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->id = id;
        out->text = strdup((const char *)sqlite3_column_text(st, 0));
        out->metadata = strdup((const char *)sqlite3_column_text(st, 1));
        out->created_at = sqlite3_column_int64(st, 2);
        out->updated_at = sqlite3_column_int64(st, 3);
        if (!out->text || !out->metadata) {
            store_archival_clear(out);
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for an archival passage");
        }
    } else if (rc == SQLITE_DONE) {
        err = llmos_fail(LLMOS_ERR_NOT_FOUND, "no archival passage with id %lld", (long long)id);
    } else {
        err = store_db_fail(s, rc, "reading an archival passage");
    }
    sqlite3_finalize(st);
    return err;
}

llmos_err store_archival_get(store *s, const char *principal, int64_t id, store_archival *out)
{
    return fetch_row(s, principal, id, out);
}

llmos_err store_archival_delete(store *s, const char *principal, int64_t id)
{
    assert(store_is_open(s) && principal);
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s, "DELETE FROM archival WHERE id = ?1 AND principal = ?2", &st);
    if (err)
        return err;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, principal, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_db_fail(s, rc, "deleting an archival passage");
    if (sqlite3_changes(s->db) == 0)
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "no archival passage with id %lld", (long long)id);
    vindex_note(s, id, NULL, false);
    return LLMOS_OK;
}

typedef struct scored {
    int64_t id;
    double score;
} scored;

/* The ids of one principal's passages, sorted: the filter of a search when the store holds
 * other principals' passages too. */
typedef struct id_set {
    int64_t *ids;
    size_t n;
} id_set;

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static bool in_set(uint64_t id, void *ctx)
{
    const id_set *set = ctx;
    int64_t key = (int64_t)id;
    return bsearch(&key, set->ids, set->n, sizeof key, cmp_id) != NULL;
}

/* The principal's ids into *set, or set->ids NULL when every passage is the principal's (no
 * filter needed). */
static llmos_err principal_ids(store *s, const char *principal, id_set *set)
{
    set->ids = NULL;
    set->n = 0;
    sqlite3_stmt *st = NULL;
    /* two range probes of archival_by_principal: no passage is read (a scan of the table would
     * decrypt every page of it, since the principal column sits after the embedding) */
    llmos_err err = store_prepare(s,
                                  "SELECT EXISTS(SELECT 1 FROM archival WHERE principal < ?1)"
                                  " OR EXISTS(SELECT 1 FROM archival WHERE principal > ?1)",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, principal, -1, SQLITE_STATIC);
    bool others = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (!others)
        return LLMOS_OK;
    err = store_prepare(s, "SELECT id FROM archival WHERE principal = ?1 ORDER BY id", &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, principal, -1, SQLITE_STATIC);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (set->n == cap) {
            cap = cap ? 2 * cap : 64;
            int64_t *n = realloc(set->ids, cap * sizeof *n);
            if (!n) {
                err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for a search");
                break;
            }
            set->ids = n;
        }
        set->ids[set->n++] = sqlite3_column_int64(st, 0);
    }
    if (!err && rc != SQLITE_DONE)
        err = store_db_fail(s, rc, "searching archival memory");
    sqlite3_finalize(st);
    if (!err && !set->ids) {
        set->ids = malloc(sizeof *set->ids); /* none of the principal's: an empty filter */
        if (!set->ids)
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for a search");
    }
    return err;
}

/* The k nearest by the HNSW index (rebuilt first if the rows changed behind it), among the
 * ids of `set` when it has any. */
static llmos_err vindex_search(store *s, const float *q, size_t k, id_set *set, scored *best,
                               size_t *nb)
{
    vindex *vi = s->vindex;
    assert(vi && q && k > 0 && best && nb);
    vsig sig;
    llmos_err err = rows_signature(s, &sig);
    if (!err && !sig_equal(&sig, &vi->sig)) {
        LOG_INFO("storage", "%s: archival rows changed; rebuilding the vector index", s->db_path);
        err = vindex_build(s, vi);
    }
    vdb_hit *hits = err ? NULL : calloc(k, sizeof *hits);
    if (!err && !hits)
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for search results");
    size_t nh = 0;
    if (!err)
        err = vdb_search(vi->idx, q, k, k * 4 > VINDEX_EF ? k * 4 : VINDEX_EF,
                         set->ids ? in_set : NULL, set, hits, &nh);
    for (size_t i = 0; !err && hits && i < nh; i++)
        best[i] = (scored){(int64_t)hits[i].id, 1.0 - hits[i].distance};
    *nb = err ? 0 : nh;
    free(hits);
    return err;
}

/* Keep the k best of a stream in best[0..*n), sorted by descending score. */
static void keep_best(scored *best, size_t k, size_t *n, int64_t id, double score)
{
    assert(*n <= k);
    if (*n == k && (k == 0 || score <= best[k - 1].score))
        return;
    size_t i = *n < k ? (*n)++ : k - 1;
    while (i > 0 && best[i - 1].score < score) {
        best[i] = best[i - 1];
        i--;
    }
    best[i] = (scored){id, score};
}

/* The kc passages of `principal` (whose ids are `set`, see principal_ids) nearest to the unit
 * vector q, best first, into best[]. */
static llmos_err vector_candidates(store *s, const char *principal, id_set *set, const float *q,
                                   size_t kc, scored *best, size_t *nb)
{
    *nb = 0;
    if (s->vindex && nonzero(q, s->emb->dim))
        return vindex_search(s, q, kc, set, best, nb);
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "SELECT id, embedding FROM archival WHERE embedder = ?1 "
                                  "AND principal = ?2",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, s->emb->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, principal, -1, SQLITE_STATIC);
    int rc;
    size_t want = s->emb->dim * sizeof(float);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const float *v = sqlite3_column_blob(st, 1);
        if ((size_t)sqlite3_column_bytes(st, 1) != want || !v)
            continue; /* another dimension under the same name: not comparable */
        double dot = 0;
        for (uint32_t i = 0; i < s->emb->dim; i++)
            dot += (double)q[i] * v[i];
        keep_best(best, kc, nb, sqlite3_column_int64(st, 0), dot);
    }
    if (rc != SQLITE_DONE)
        err = store_db_fail(s, rc, "searching archival memory");
    sqlite3_finalize(st);
    return err;
}

/* The kc passages among `set` (see principal_ids) that share the most (and rarest) words with
 * the query, by BM25 over archival_fts, best first, into ids[]. Only the word index is read. */
static llmos_err word_candidates(store *s, id_set *set, const char *query, size_t kc, int64_t *ids,
                                 size_t *nl)
{
    *nl = 0;
    llmos_buf fq = {0};
    if (!store_fts_query(query, &fq)) {
        bool nomem = fq.len > 0;
        buf_free(&fq);
        return nomem ? llmos_fail(LLMOS_ERR_NOMEM, "no memory for a search") : LLMOS_OK;
    }
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "SELECT rowid FROM archival_fts WHERE archival_fts MATCH ?1"
                                  " ORDER BY bm25(archival_fts), rowid DESC",
                                  &st);
    if (!err) {
        sqlite3_bind_text(st, 1, fq.data, (int)fq.len, SQLITE_STATIC);
        int rc = SQLITE_DONE;
        while (*nl < kc && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            if (!set->ids || in_set((uint64_t)id, set))
                ids[(*nl)++] = id;
        }
        if (*nl < kc && rc != SQLITE_DONE)
            err = store_db_fail(s, rc, "searching archival memory by words");
        sqlite3_finalize(st);
    }
    buf_free(&fq);
    return err;
}

/* Cosine similarity of passage id's stored vector with the unit vector q (0 when it has none
 * of this embedder's). */
static llmos_err row_cosine(store *s, int64_t id, const float *q, double *out)
{
    *out = 0;
    sqlite3_stmt *st = NULL;
    llmos_err err =
        store_prepare(s, "SELECT embedding FROM archival WHERE id = ?1 AND embedder = ?2", &st);
    if (err)
        return err;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, s->emb->name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const float *v = sqlite3_column_blob(st, 0);
        if (v && (size_t)sqlite3_column_bytes(st, 0) == s->emb->dim * sizeof(float))
            for (uint32_t i = 0; i < s->emb->dim; i++)
                *out += (double)q[i] * v[i];
    } else if (rc != SQLITE_DONE) {
        err = store_db_fail(s, rc, "reading an archival vector");
    }
    sqlite3_finalize(st);
    return err;
}

typedef struct fused {
    int64_t id;
    double rrf;    /* sum of 1 / (RRF_K + rank) over the two rankings */
    double cosine; /* the tie-break, and what the caller is shown */
    bool has_cosine;
} fused;

static int cmp_fused(const void *a, const void *b)
{
    const fused *x = a, *y = b;
    if (x->rrf != y->rrf)
        return x->rrf < y->rrf ? 1 : -1;
    if (x->cosine != y->cosine)
        return x->cosine < y->cosine ? 1 : -1;
    return (x->id < y->id) - (x->id > y->id);
}

/* Reciprocal rank fusion's constant (Cormack, Clarke and Buettcher, SIGIR 2009): how much the
 * top ranks outweigh the rest. */
#define RRF_K 60.0

/* Add a candidate at `rank` (0-based) of one ranking to the fused list f[0..*n). */
static fused *fuse_add(fused *f, size_t *n, int64_t id, size_t rank)
{
    for (size_t i = 0; i < *n; i++)
        if (f[i].id == id) {
            f[i].rrf += 1.0 / (RRF_K + (double)rank + 1.0);
            return &f[i];
        }
    f[*n] = (fused){.id = id, .rrf = 1.0 / (RRF_K + (double)rank + 1.0)};
    return &f[(*n)++];
}

llmos_err store_archival_search(store *s, const char *principal, const char *query, size_t k,
                                store_archival **out, size_t *n)
{
    assert(store_is_open(s) && principal && out && n);
    *out = NULL;
    *n = 0;
    if (k == 0)
        return LLMOS_OK;
    if (!query)
        query = "";
    float *q = NULL;
    llmos_err err = embed_unit(s, query, &q);
    if (err)
        return err;
    /* each ranking offers more than k, so that a passage high in one and fair in the other
     * can win */
    size_t kc = k < 16 ? 32 : 2 * k;
    scored *best = calloc(kc, sizeof *best);
    int64_t *words = calloc(kc, sizeof *words);
    fused *f = calloc(2 * kc, sizeof *f);
    if (!best || !words || !f)
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for search results");
    size_t nb = 0, nw = 0, nf = 0;
    id_set set = {0};
    if (!err)
        err = principal_ids(s, principal, &set);
    if (!err)
        err = vector_candidates(s, principal, &set, q, kc, best, &nb);
    if (!err)
        err = word_candidates(s, &set, query, kc, words, &nw);
    free(set.ids);
    for (size_t i = 0; !err && i < nb; i++) {
        fused *c = fuse_add(f, &nf, best[i].id, i);
        c->cosine = best[i].score;
        c->has_cosine = true;
    }
    for (size_t i = 0; !err && i < nw; i++)
        (void)fuse_add(f, &nf, words[i], i);
    for (size_t i = 0; !err && i < nf; i++)
        if (!f[i].has_cosine)
            err = row_cosine(s, f[i].id, q, &f[i].cosine);
    free(q);
    free(best);
    free(words);
    if (!err && nf > 0)
        qsort(f, nf, sizeof *f, cmp_fused);
    size_t keep = nf < k ? nf : k;
    store_archival *res = NULL;
    if (!err && keep > 0) {
        res = calloc(keep, sizeof *res);
        if (!res)
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for search results");
    }
    size_t got = 0;
    for (size_t i = 0; !err && res && i < keep; i++) {
        err = fetch_row(s, principal, f[i].id, &res[got]);
        if (!err)
            res[got++].score = f[i].cosine;
    }
    free(f);
    if (err) {
        store_archivals_free(res, got);
        return err;
    }
    *out = res;
    *n = got;
    return LLMOS_OK;
}

void store_archival_clear(store_archival *a)
{
    if (!a)
        return;
    free(a->text);
    free(a->metadata);
    memset(a, 0, sizeof *a);
}

void store_archivals_free(store_archival *a, size_t n)
{
    if (!a)
        return;
    for (size_t i = 0; i < n; i++)
        store_archival_clear(&a[i]);
    free(a);
}

llmos_err store_set_embedder(store *s, const store_embedder *emb)
{
    assert(store_is_open(s));
    store_vindex_close(s);
    s->emb = emb;
    return emb ? store_vindex_open(s) : LLMOS_OK;
}

llmos_err store_archival_reembed(store *s, const store_embedder *emb, size_t *n)
{
    assert(store_is_open(s) && emb && n);
    *n = 0;
    llmos_err err = store_set_embedder(s, emb);
    if (!err)
        err = store_begin(s);
    if (err)
        return err;
    sqlite3_stmt *rd = NULL, *wr = NULL;
    err = store_prepare(s, "SELECT id, text FROM archival ORDER BY id", &rd);
    if (!err)
        err = store_prepare(s, "UPDATE archival SET embedding = ?1, embedder = ?2 WHERE id = ?3",
                            &wr);
    int rc = SQLITE_OK;
    while (!err && (rc = sqlite3_step(rd)) == SQLITE_ROW) {
        float *v = NULL;
        err = embed_unit(s, (const char *)sqlite3_column_text(rd, 1), &v);
        if (err)
            break;
        sqlite3_bind_blob(wr, 1, v, (int)(emb->dim * sizeof *v), SQLITE_TRANSIENT);
        sqlite3_bind_text(wr, 2, emb->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(wr, 3, sqlite3_column_int64(rd, 0));
        int wrc = sqlite3_step(wr);
        sqlite3_reset(wr);
        free(v);
        if (wrc != SQLITE_DONE)
            err = store_db_fail(s, wrc, "re-embedding a passage");
        else
            (*n)++;
    }
    if (!err && rc != SQLITE_DONE)
        err = store_db_fail(s, rc, "reading archival passages");
    sqlite3_finalize(rd);
    sqlite3_finalize(wr);
    if (!err)
        err = store_commit(s);
    if (err) {
        (void)store_rollback(s);
        *n = 0;
        return err;
    }
    /* the index of the old vectors is stale: rebuild it from the new ones */
    store_vindex_close(s);
    return store_vindex_open(s);
}

llmos_err store_archival_list(store *s, const char *principal, size_t offset, size_t limit,
                              store_archival **out, size_t *n)
{
    assert(store_is_open(s) && principal && out && n);
    *out = NULL;
    *n = 0;
    if (limit == 0)
        return LLMOS_OK;
    store_archival *res = calloc(limit, sizeof *res);
    if (!res)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for archival passages");
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "SELECT id FROM archival WHERE principal = ?1"
                                  " ORDER BY id DESC LIMIT ?2 OFFSET ?3",
                                  &st);
    size_t got = 0;
    if (!err) {
        sqlite3_bind_text(st, 1, principal, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)offset);
        int rc;
        while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            err = fetch_row(s, principal, sqlite3_column_int64(st, 0), &res[got]);
            if (!err)
                got++;
        }
        if (!err && rc != SQLITE_DONE)
            err = store_db_fail(s, rc, "listing archival passages");
        sqlite3_finalize(st);
    }
    if (err) {
        store_archivals_free(res, got);
        return err;
    }
    if (got == 0) {
        free(res);
        res = NULL;
    }
    *out = res;
    *n = got;
    return LLMOS_OK;
}

/* ---- checking the index against the table ------------------------------------------------ */

/* Check every stored vector of embedder `name` (dimension dim): the right size, finite, unit
 * length or zero; and, when idx is given, that idx holds exactly those ids with those vectors.
 * *count gets the number of vectors. */
static llmos_err check_vectors(store *s, const char *name, uint32_t dim, vdb *idx, int64_t *count)
{
    sqlite3_stmt *st = NULL;
    llmos_err err =
        store_prepare(s, "SELECT id, embedding FROM archival WHERE embedder = ?1 ORDER BY id", &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    float *got = idx ? malloc(dim * sizeof *got) : NULL;
    if (idx && !got)
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory to check the vector index");
    int64_t n = 0, indexed = 0;
    int rc = SQLITE_DONE;
    while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const float *v = sqlite3_column_blob(st, 1);
        if (!v || (size_t)sqlite3_column_bytes(st, 1) != dim * sizeof(float)) {
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "archival passage #%lld: its vector has %d bytes, %s makes %zu",
                             (long long)id, sqlite3_column_bytes(st, 1), name, dim * sizeof(float));
            break;
        }
        double norm = 0;
        for (uint32_t i = 0; i < dim; i++)
            norm += (double)v[i] * v[i];
        if (!isfinite(norm) || (norm != 0 && fabs(norm - 1.0) > 1e-3)) {
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "archival passage #%lld: its vector is not of unit length "
                             "(squared length %g)",
                             (long long)id, norm);
            break;
        }
        n++;
        if (!idx || norm == 0)
            continue; /* zero vectors are never indexed */
        indexed++;
        if (!vdb_contains(idx, (uint64_t)id) || vdb_get(idx, (uint64_t)id, got) != LLMOS_OK) {
            llmos_err_clear();
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "the vector index lacks archival passage #%lld that the table holds",
                             (long long)id);
            break;
        }
        for (uint32_t i = 0; i < dim; i++)
            if (fabsf(got[i] - v[i]) > 1e-4f) {
                err = llmos_fail(LLMOS_ERR_FORMAT,
                                 "the vector index holds another vector for archival passage "
                                 "#%lld than the table (component %u: %g, not %g)",
                                 (long long)id, i, (double)got[i], (double)v[i]);
                break;
            }
    }
    if (!err && rc != SQLITE_DONE)
        err = store_db_fail(s, rc, "reading archival vectors");
    sqlite3_finalize(st);
    free(got);
    if (!err && idx && vdb_count(idx) != (size_t)indexed)
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "the vector index holds %zu vectors and the table %lld: it has vectors "
                         "of passages that are gone",
                         vdb_count(idx), (long long)indexed);
    *count = n;
    return err;
}

llmos_err store_archival_verify(store *s, store_archival_check *out)
{
    assert(store_is_open(s) && out);
    memset(out, 0, sizeof *out);
    /* one embedder for every vector */
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "SELECT embedder, count(*) FROM archival WHERE embedder IS NOT"
                                  " NULL GROUP BY embedder ORDER BY count(*) DESC",
                                  &st);
    if (err)
        return err;
    char name[256] = "";
    int rc;
    while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *e = (const char *)sqlite3_column_text(st, 0);
        if (!name[0])
            snprintf(name, sizeof name, "%s", e ? e : "");
        else
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "archival memory mixes embedders: %lld passages by '%s' beside "
                             "those by '%s' (re-embed them with `llmos memory reembed`)",
                             (long long)sqlite3_column_int64(st, 1), e ? e : "", name);
    }
    if (!err && rc != SQLITE_DONE)
        err = store_db_fail(s, rc, "reading archival embedders");
    sqlite3_finalize(st);
    if (err || !name[0])
        return err;
    snprintf(out->embedder, sizeof out->embedder, "%s", name);
    /* the saved index, when there is one for these rows */
    vdb *idx = NULL;
    uint32_t dim = 0;
    if ((err = store_prepare(s,
                             "SELECT embedder, dim, signature, data FROM vector_index"
                             " WHERE name = ?1",
                             &st)))
        return err;
    sqlite3_bind_text(st, 1, VINDEX_NAME, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW &&
        strcmp((const char *)sqlite3_column_text(st, 0), name) == 0) {
        dim = (uint32_t)sqlite3_column_int64(st, 1);
        snprintf(out->index_signature, sizeof out->index_signature, "%s",
                 (const char *)sqlite3_column_text(st, 2));
        err = vdb_load(sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3), &idx);
        if (err)
            err = llmos_fail_context(err, "the saved vector index: ");
        else if (vdb_dim(idx) != dim)
            err =
                llmos_fail(LLMOS_ERR_FORMAT, "the saved vector index has dimension %u and says %u",
                           vdb_dim(idx), dim);
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        err = store_db_fail(s, rc, "reading the vector index");
    }
    sqlite3_finalize(st);
    /* an index saved for other rows is stale, not wrong: it is rebuilt when next used */
    if (!err && idx) {
        const store_embedder *was = s->emb;
        store_embedder probe = {.name = name, .dim = dim};
        s->emb = &probe;
        vsig sig;
        err = rows_signature(s, &sig);
        s->emb = was;
        char now[96];
        sig_text(&sig, now);
        out->index_current = !err && strcmp(now, out->index_signature) == 0;
    }
    if (!err && !idx) {
        /* no saved index: the vectors' own dimension is the first row's */
        if (!(err = store_prepare(s,
                                  "SELECT length(embedding) FROM archival WHERE embedder = ?1"
                                  " LIMIT 1",
                                  &st))) {
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW)
                dim = (uint32_t)(sqlite3_column_int64(st, 0) / (sqlite3_int64)sizeof(float));
            sqlite3_finalize(st);
        }
    }
    if (!err)
        err = check_vectors(s, name, dim, out->index_current ? idx : NULL, &out->vectors);
    out->index_checked = !err && idx && out->index_current;
    vdb_free(idx);
    return err;
}
