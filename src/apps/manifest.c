/*
 * manifest.c - app manifests: strict parsing, building, and the rules for names, versions and
 * file paths (llmos/apps.h; the format is in docs/supply-chain.md, "Manifests").
 *
 * A manifest is outside input even when signed (a trusted publisher can still make mistakes,
 * and the parser runs before anyone looks), so the parser checks everything the store and the
 * loader rely on: a file path can never leave the app's folder, a declared size is bounded
 * before any disk space is reserved for it, and the bytes are the canonical form, so that what
 * was signed is exactly what is shown and stored.
 *
 * The provenance is an in-toto v1 statement whose predicate is SLSA provenance v1; its
 * subjects must be exactly the manifest's files (name and sha256), so that the statement
 * speaks about these bytes and no others.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/apps.h"
#include "llmos/json.h"

#define MANIFEST_SCHEMA "llmos.app/v1"
#define INTOTO_TYPE     "https://in-toto.io/Statement/v1"
#define SLSA_PREDICATE  "https://slsa.dev/provenance/v1"
#define APPS_BUILD_TYPE "https://llmos.invalid/publish/v1"
#define MAX_CAPS        32

static const char *const kind_names[APPS_KIND_COUNT_] = {"model", "tool", "mcp", "prompts",
                                                         "specialist"};

const char *apps_kind_name(apps_kind k)
{
    return (unsigned)k < APPS_KIND_COUNT_ ? kind_names[k] : "?";
}

bool apps_kind_parse(const char *s, apps_kind *out)
{
    for (int i = 0; i < APPS_KIND_COUNT_; i++)
        if (s && strcmp(s, kind_names[i]) == 0) {
            *out = (apps_kind)i;
            return true;
        }
    return false;
}

/* ---- names, versions, paths --------------------------------------------------------------- */

llmos_err apps_name_check(const char *name, const char *what)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > APPS_NAME_MAX)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: a name is 1 to %d bytes", what, APPS_NAME_MAX);
    if (!isalnum((unsigned char)name[0]) || isupper((unsigned char)name[0]))
        return llmos_fail(LLMOS_ERR_FORMAT, "%s '%s': a name starts with a letter or digit", what,
                          name);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "%s '%.80s': a name holds only a-z, 0-9, '.', '_' and '-'", what,
                              name);
    }
    if (strstr(name, ".."))
        return llmos_fail(LLMOS_ERR_FORMAT, "%s '%s': a name may not contain '..'", what, name);
    return LLMOS_OK;
}

/* The numeric part of a version: up to 4 numbers; the rest (after '-') is the pre-release. */
static bool version_parts(const char *v, uint64_t nums[4], int *n_nums, const char **pre)
{
    int k = 0;
    const char *p = v;
    memset(nums, 0, 4 * sizeof *nums);
    for (;;) {
        if (!isdigit((unsigned char)*p) || k == 4)
            return false;
        if (*p == '0' && isdigit((unsigned char)p[1]))
            return false; /* leading zero: "01" would equal "1" */
        uint64_t x = 0;
        while (isdigit((unsigned char)*p)) {
            if (x > (UINT64_MAX - 9) / 10)
                return false;
            x = x * 10 + (uint64_t)(*p++ - '0');
        }
        nums[k++] = x;
        if (*p != '.')
            break;
        p++;
    }
    *n_nums = k;
    if (*p == '\0') {
        *pre = NULL;
        return true;
    }
    if (*p != '-' || !p[1])
        return false;
    for (const char *q = p + 1; *q; q++)
        if (!isalnum((unsigned char)*q) && *q != '.')
            return false;
    *pre = p + 1;
    return true;
}

llmos_err apps_version_check(const char *version, const char *what)
{
    uint64_t nums[4];
    int n;
    const char *pre;
    if (!version || strlen(version) > 63 || !version_parts(version, nums, &n, &pre))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s '%.80s': a version is 1 to 4 dot-separated numbers without "
                          "leading zeros (1.2.0), optionally -PRERELEASE of [0-9A-Za-z.]",
                          what, version ? version : "");
    return LLMOS_OK;
}

int apps_version_cmp(const char *a, const char *b)
{
    uint64_t na[4], nb[4];
    int ka, kb;
    const char *pa, *pb;
    bool va = version_parts(a, na, &ka, &pa), vb = version_parts(b, nb, &kb, &pb);
    assert(va && vb);
    if (!va || !vb)
        return strcmp(a, b);
    for (int i = 0; i < 4; i++)
        if (na[i] != nb[i])
            return na[i] < nb[i] ? -1 : 1;
    if (!pa || !pb) /* a release is newer than its pre-releases */
        return pa ? -1 : pb ? 1 : 0;
    int c = strcmp(pa, pb);
    return c < 0 ? -1 : c > 0;
}

llmos_err apps_path_check(const char *path, const char *what)
{
    size_t n = path ? strlen(path) : 0;
    if (n == 0 || n > APPS_PATH_MAX)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: a file path is 1 to %d bytes", what,
                          APPS_PATH_MAX);
    if (path[0] == '/')
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s '%.80s': an absolute path; a manifest names files relative to "
                          "the app",
                          what, path);
    if (!utf8_valid(path, n))
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: a file path is not valid UTF-8", what);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x20 || c == 0x7f || c == '\\' || c == ':')
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "%s '%.80s': a file path may not hold '\\', ':' or control "
                              "characters",
                              what, path);
    }
    for (const char *p = path;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "%s '%.80s': a file path may not hold empty, '.' or '..' "
                              "components (path traversal)",
                              what, path);
        if (!slash)
            break;
        p = slash + 1;
    }
    return LLMOS_OK;
}

static bool is_hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* ---- parsing ------------------------------------------------------------------------------ */

void apps_manifest_free(apps_manifest *m)
{
    if (!m)
        return;
    json_decref(m->json);
    free(m->caps);
    free(m->files);
    free(m);
}

static llmos_err need_string(const json_t *o, const char *key, const char *what, const char **out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return llmos_fail(LLMOS_ERR_FORMAT, "manifest: %s needs the string member \"%s\"", what,
                          key);
    *out = json_string_value(v);
    return LLMOS_OK;
}

/* The in-toto statement: its type, SLSA's predicate type, a predicate with a build type and a
 * builder, and subjects that are exactly the manifest's files. */
static llmos_err check_provenance(const apps_manifest *m)
{
    const json_t *st = m->provenance;
    const char *s = NULL;
    llmos_err err = need_string(st, "_type", "the provenance", &s);
    if (!err && strcmp(s, INTOTO_TYPE) != 0)
        err = llmos_fail(LLMOS_ERR_FORMAT, "manifest: provenance _type is '%.80s', not '%s'", s,
                         INTOTO_TYPE);
    if (!err)
        err = need_string(st, "predicateType", "the provenance", &s);
    if (!err && strcmp(s, SLSA_PREDICATE) != 0)
        err =
            llmos_fail(LLMOS_ERR_FORMAT, "manifest: provenance predicateType is '%.80s', not '%s'",
                       s, SLSA_PREDICATE);
    if (err)
        return err;
    const json_t *pred = json_object_get(st, "predicate");
    const json_t *bd = json_object_get(pred, "buildDefinition");
    const json_t *rd = json_object_get(pred, "runDetails");
    if (!json_is_object(bd) || !json_is_string(json_object_get(bd, "buildType")) ||
        !json_is_object(rd) ||
        !json_is_string(json_object_get(json_object_get(rd, "builder"), "id")))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "manifest: the provenance predicate needs buildDefinition.buildType "
                          "and runDetails.builder.id");
    const json_t *subj = json_object_get(st, "subject");
    if (!json_is_array(subj) || json_array_size(subj) != m->n_files)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "manifest: the provenance's subjects must be exactly the %zu file(s)",
                          m->n_files);
    for (size_t i = 0; i < m->n_files; i++) {
        const json_t *e = json_array_get(subj, i);
        const char *name = ljson_get_string(e, "name", NULL);
        const char *d = ljson_get_string(json_object_get(e, "digest"), "sha256", NULL);
        if (!name || !d || strcmp(name, m->files[i].path) != 0 || strcmp(d, m->files[i].sha256))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "manifest: provenance subject %zu is not file '%s' with its "
                              "sha256",
                              i, m->files[i].path);
    }
    return LLMOS_OK;
}

static llmos_err parse_files(apps_manifest *m)
{
    const json_t *files = json_object_get(m->json, "files");
    size_t n = json_array_size(files);
    if (!json_is_array(files) || n == 0 || n > APPS_MAX_FILES)
        return llmos_fail(LLMOS_ERR_FORMAT, "manifest: \"files\" is an array of 1 to %d files",
                          APPS_MAX_FILES);
    m->files = calloc(n, sizeof *m->files);
    if (!m->files)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *f = json_array_get(files, i);
        apps_file *af = &m->files[i];
        const char *hex = NULL;
        char what[48];
        snprintf(what, sizeof what, "manifest file %zu", i);
        llmos_err err = need_string(f, "path", what, &af->path);
        if (!err)
            err = apps_path_check(af->path, what);
        if (!err)
            err = need_string(f, "sha256", what, &hex);
        if (!err && !is_hex64(hex))
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "manifest: file '%s': sha256 is 64 lower-case hex digits", af->path);
        json_t *size = json_object_get(f, "size");
        if (!err && (!json_is_integer(size) || json_integer_value(size) < 0))
            err =
                llmos_fail(LLMOS_ERR_FORMAT, "manifest: file '%s' needs a size in bytes", af->path);
        if (!err && (uint64_t)json_integer_value(size) > APPS_MAX_FILE_SIZE)
            err = llmos_fail(LLMOS_ERR_LIMIT,
                             "manifest: file '%s' declares %" PRId64
                             " bytes, more than llmos accepts (%" PRIu64 ")",
                             af->path, (int64_t)json_integer_value(size), APPS_MAX_FILE_SIZE);
        if (!err && json_object_size(f) != 3)
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "manifest: file '%s' has members other than path, sha256, size",
                             af->path);
        if (err)
            return err;
        memcpy(af->sha256, hex, APPS_SHA256_HEX);
        af->size = (uint64_t)json_integer_value(size);
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->files[j].path, af->path) == 0)
                return llmos_fail(LLMOS_ERR_FORMAT, "manifest: file '%s' is listed twice",
                                  af->path);
        m->n_files = i + 1;
    }
    return LLMOS_OK;
}

static llmos_err parse_members(apps_manifest *m)
{
    static const char *const known[] = {"schema",      "name",  "version",    "publisher",
                                        "kind",        "files", "provenance", "capabilities",
                                        "description", "app"};
    const json_t *j = m->json;
    if (!json_is_object(j))
        return llmos_fail(LLMOS_ERR_FORMAT, "manifest: not a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v)
    {
        bool ok = false;
        for (size_t i = 0; i < LLMOS_ARRAY_LEN(known); i++)
            ok |= strcmp(key, known[i]) == 0;
        if (!ok)
            return llmos_fail(LLMOS_ERR_FORMAT, "manifest: unknown member \"%.40s\"", key);
    }
    const char *schema = NULL, *kind = NULL;
    llmos_err err = need_string(j, "schema", "the manifest", &schema);
    if (!err && strcmp(schema, MANIFEST_SCHEMA) != 0)
        err = llmos_fail(LLMOS_ERR_UNSUPPORTED, "manifest: schema '%.40s', llmos reads '%s'",
                         schema, MANIFEST_SCHEMA);
    if (!err)
        err = need_string(j, "name", "the manifest", &m->name);
    if (!err)
        err = apps_name_check(m->name, "manifest name");
    if (!err)
        err = need_string(j, "version", "the manifest", &m->version);
    if (!err)
        err = apps_version_check(m->version, "manifest version");
    if (!err)
        err = need_string(j, "publisher", "the manifest", &m->publisher);
    if (!err)
        err = apps_name_check(m->publisher, "manifest publisher");
    if (!err)
        err = need_string(j, "kind", "the manifest", &kind);
    if (!err && !apps_kind_parse(kind, &m->kind))
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "manifest: kind '%.40s' is not model, tool, mcp, prompts or specialist",
                         kind);
    m->description = ljson_get_string(j, "description", "");
    if (!err && json_object_get(j, "description") &&
        !json_is_string(json_object_get(j, "description")))
        err = llmos_fail(LLMOS_ERR_FORMAT, "manifest: description is a string");
    if (!err && json_object_get(j, "app") && !json_is_object(json_object_get(j, "app")))
        err = llmos_fail(LLMOS_ERR_FORMAT, "manifest: app is an object");
    const json_t *caps = json_object_get(j, "capabilities");
    if (!err && (!json_is_array(caps) || json_array_size(caps) > MAX_CAPS))
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "manifest: \"capabilities\" is an array of at most %d names", MAX_CAPS);
    if (err)
        return err;
    m->caps = calloc(json_array_size(caps) + 1, sizeof *m->caps);
    if (!m->caps)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < json_array_size(caps); i++) {
        const char *c = json_string_value(json_array_get(caps, i));
        if (!c || apps_name_check(c, "capability"))
            return llmos_fail(LLMOS_ERR_FORMAT, "manifest: capability %zu is not a name", i);
        m->caps[m->n_caps++] = c;
    }
    if ((err = parse_files(m)))
        return err;
    m->provenance = json_object_get(j, "provenance");
    if (!json_is_object(m->provenance))
        return llmos_fail(LLMOS_ERR_FORMAT, "manifest: needs a provenance statement (object)");
    return check_provenance(m);
}

llmos_err apps_manifest_parse(const char *bytes, size_t len, apps_manifest **out)
{
    *out = NULL;
    if (len > APPS_MANIFEST_MAX)
        return llmos_fail(LLMOS_ERR_LIMIT, "manifest: %zu bytes, more than %u", len,
                          APPS_MANIFEST_MAX);
    apps_manifest *m = calloc(1, sizeof *m);
    if (!m)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    llmos_err err = ljson_parse_text(bytes, len, "manifest", 32, &m->json);
    llmos_buf canon = {0};
    if (!err)
        err = apps_canonical_json(m->json, &canon);
    if (!err && (canon.len != len || memcmp(canon.data, bytes, len) != 0))
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "manifest: not in canonical form (members sorted, no whitespace: "
                         "docs/supply-chain.md); refused, since its bytes are what is signed");
    buf_free(&canon);
    if (!err)
        err = parse_members(m);
    if (err) {
        apps_manifest_free(m);
        return err;
    }
    *out = m;
    return LLMOS_OK;
}

/* ---- building ----------------------------------------------------------------------------- */

llmos_err apps_manifest_build(const apps_manifest_params *p, llmos_buf *out)
{
    llmos_err err = apps_name_check(p->name, "name");
    if (!err)
        err = apps_version_check(p->version, "version");
    if (!err)
        err = apps_name_check(p->publisher, "publisher");
    if (!err && (p->n_files == 0 || p->n_files > APPS_MAX_FILES))
        err = llmos_fail(LLMOS_ERR_INVALID, "an app has 1 to %d files", APPS_MAX_FILES);
    if (err)
        return err;
    json_t *j = json_object(), *files = json_array(), *caps = json_array(),
           *subjects = json_array();
    for (size_t i = 0; i < p->n_caps; i++)
        json_array_append_new(caps, json_string(p->caps[i]));
    for (size_t i = 0; !err && i < p->n_files; i++) {
        const apps_file *f = &p->files[i];
        err = apps_path_check(f->path, "file");
        if (!err && !is_hex64(f->sha256))
            err = llmos_fail(LLMOS_ERR_INVALID, "file '%s': not a SHA-256 in hex", f->path);
        if (err)
            break;
        json_array_append_new(files, json_pack("{s:s, s:s, s:I}", "path", f->path, "sha256",
                                               f->sha256, "size", (json_int_t)f->size));
        json_array_append_new(
            subjects, json_pack("{s:s, s:{s:s}}", "name", f->path, "digest", "sha256", f->sha256));
    }
    json_t *deps = json_array();
    if (p->source) {
        json_t *dep = json_pack("{s:s}", "uri", p->source);
        if (p->source_sha)
            json_object_set_new(dep, "digest", json_pack("{s:s}", "gitCommit", p->source_sha));
        json_array_append_new(deps, dep);
    }
    json_t *prov =
        json_pack("{s:s, s:o, s:s, s:{s:{s:s, s:{s:s}, s:o}, s:{s:{s:s}}}}", "_type", INTOTO_TYPE,
                  "subject", subjects, "predicateType", SLSA_PREDICATE, "predicate",
                  "buildDefinition", "buildType", APPS_BUILD_TYPE, "externalParameters", "source",
                  p->source ? p->source : "", "resolvedDependencies", deps, "runDetails", "builder",
                  "id", p->builder ? p->builder : "llmos publish");
    json_object_set_new(j, "schema", json_string(MANIFEST_SCHEMA));
    json_object_set_new(j, "name", json_string(p->name));
    json_object_set_new(j, "version", json_string(p->version));
    json_object_set_new(j, "publisher", json_string(p->publisher));
    json_object_set_new(j, "kind", json_string(apps_kind_name(p->kind)));
    json_object_set_new(j, "capabilities", caps);
    json_object_set_new(j, "files", files);
    if (prov)
        json_object_set_new(j, "provenance", prov);
    if (p->description && p->description[0])
        json_object_set_new(j, "description", json_string(p->description));
    if (p->extra)
        json_object_set(j, "app", p->extra);
    if (!err && !prov)
        err = llmos_fail(LLMOS_ERR_INVALID, "a source or builder is not valid UTF-8");
    size_t mark = out->len;
    if (!err)
        err = apps_canonical_json(j, out);
    json_decref(j);
    /* what was built must parse: the one set of rules for writer and reader */
    apps_manifest *m = NULL;
    if (!err && (err = apps_manifest_parse(out->data + mark, out->len - mark, &m)))
        llmos_fail_context(err, "the manifest built does not parse: ");
    apps_manifest_free(m);
    return err;
}
