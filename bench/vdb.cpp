/*
 * vdb.cpp - benchmark of llmos's HNSW index (llmos/vdb.h) against hnswlib and exact search.
 *
 *   vdb --dataset NAME --base B.fvecs --query Q.fvecs --gt GT.ivecs --metric l2|ip
 *       [--threads T] [--reps R] [--M 16] [--efC 200] [--ef 32,64,128]
 *       [--method llmos|hnswlib|exact|all]
 *
 * For each method: build an index of all base vectors with T threads (wall seconds, and the
 * growth of VmRSS from /proc/self/status in MB), then search every query on one thread with
 * k = 10, one untimed warm-up pass and R timed passes per ef setting, printing per pass
 *
 *   RESULT <tab> dataset <tab> method <tab> params <tab> build_s <tab> mem_mb <tab> recall@10 <tab> qps
 *
 * recall@10 is the mean over queries of |returned top 10 ∩ true top 10| / 10. With --method all
 * each method runs in its own child process (after the data are loaded), so that memory one
 * method freed cannot hide the growth of the next.
 *
 * Methods: llmos (vdb_insert_batch with T threads, vdb_search), hnswlib (HierarchicalNSW with
 * the same M, efC and ef, points added by T std::threads taking indices from a shared
 * counter, the first point alone, as hnswlib's own ParallelFor does), exact (a flat llmos
 * index, vdb_exact_search, one core).
 */
#include <hnswlib/hnswlib.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "llmos/vdb.h"
}

namespace {

struct Args {
    std::string dataset = "data", base, query, gt, metric = "l2", method = "all";
    int threads = 2, reps = 3, M = 16, efC = 200;
    std::vector<int> efs = {32, 64, 128};
};

struct Data {
    std::vector<float> base, query;
    std::vector<int32_t> gt;
    size_t n = 0, nq = 0, dim = 0, gt_k = 0;
};

[[noreturn]] void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "vdb: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

/* .fvecs / .ivecs: per vector an int32 dimension, then that many 4-byte values. */
template <typename T> std::vector<T> read_vecs(const std::string &path, size_t *n, size_t *dim)
{
    FILE *f = fopen(path.c_str(), "rb");
    if (!f)
        die("cannot open %s", path.c_str());
    std::vector<T> out;
    *n = 0;
    *dim = 0;
    int32_t d;
    while (fread(&d, 4, 1, f) == 1) {
        if (d <= 0 || (*dim && (size_t)d != *dim))
            die("%s: inconsistent or bad vector dimension", path.c_str());
        *dim = (size_t)d;
        size_t old = out.size();
        out.resize(old + (size_t)d);
        if (fread(out.data() + old, 4, (size_t)d, f) != (size_t)d)
            die("%s: truncated vector", path.c_str());
        (*n)++;
    }
    fclose(f);
    if (*n == 0)
        die("%s: no vectors", path.c_str());
    return out;
}

double now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/* CPU seconds of the calling thread, or of the whole process: the machine may be shared, and
 * CPU time says how much work a method did whatever else is running. */
double cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

double rss_mb()
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atof(line + 6);
    fclose(f);
    return kb / 1024.0;
}

double recall_of(const Data &d, size_t q, const uint64_t *ids, size_t n)
{
    size_t hit = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < 10 && j < d.gt_k; j++)
            if ((int64_t)ids[i] == d.gt[q * d.gt_k + j]) {
                hit++;
                break;
            }
    return (double)hit / 10.0;
}

void result(const Args &a, const char *method, const std::string &params, double build_s,
            double mem_mb, double recall, double qps)
{
    printf("RESULT\t%s\t%s\t%s\t%.2f\t%.1f\t%.4f\t%.1f\n", a.dataset.c_str(), method,
           params.c_str(), build_s, mem_mb, recall, qps);
    fflush(stdout);
}

/* One warm-up pass and R timed passes of `search(q, ids) -> n` over all queries. */
template <typename F>
void passes(const Args &a, const Data &d, const char *method, const std::string &params,
            double build_s, double mem_mb, F search)
{
    uint64_t ids[10];
    for (int rep = -1; rep < a.reps; rep++) {
        double rsum = 0;
        double t0 = now(), c0 = cpu_s(RUSAGE_THREAD);
        for (size_t q = 0; q < d.nq; q++) {
            size_t n = search(d.query.data() + q * d.dim, ids);
            rsum += recall_of(d, q, ids, n);
        }
        double t = now() - t0, c = cpu_s(RUSAGE_THREAD) - c0;
        if (rep >= 0) {
            result(a, method, params, build_s, mem_mb, rsum / (double)d.nq, (double)d.nq / t);
            fprintf(stderr, "# %s %s %s: %.1f queries per CPU second\n", a.dataset.c_str(),
                    method, params.c_str(), (double)d.nq / c);
        }
    }
}

std::string params_of(const Args &a, int ef)
{
    return "M=" + std::to_string(a.M) + ",efC=" + std::to_string(a.efC) + ",ef=" + std::to_string(ef);
}

void check(llmos_err e, const char *what)
{
    if (e != LLMOS_OK)
        die("%s failed", (std::string(what) + ": " + llmos_errmsg()).c_str());
}

void run_llmos(const Args &a, const Data &d, bool exact)
{
    std::vector<uint64_t> ids(d.n);
    for (size_t i = 0; i < d.n; i++)
        ids[i] = i;
    double m0 = rss_mb(), t0 = now(), c0 = cpu_s(RUSAGE_SELF);
    vdb_params p = vdb_params_default();
    p.M = (uint32_t)a.M;
    p.ef_construction = (uint32_t)a.efC;
    p.exact_below = 0;
    p.flat = exact;
    vdb *idx = nullptr;
    check(vdb_new((uint32_t)d.dim, a.metric == "ip" ? VDB_IP : VDB_L2, &p, &idx), "vdb_new");
    check(vdb_reserve(idx, d.n), "vdb_reserve");
    check(vdb_insert_batch(idx, d.n, ids.data(), d.base.data(), exact ? 1 : a.threads),
          "vdb_insert_batch");
    double build_s = now() - t0, mem = rss_mb() - m0;
    fprintf(stderr, "# %s %s build: %.2f CPU seconds\n", a.dataset.c_str(), exact ? "exact" : "llmos",
            cpu_s(RUSAGE_SELF) - c0);
    vdb_hit hits[10];
    if (exact) {
        passes(a, d, "exact", "exact", build_s, mem, [&](const float *q, uint64_t *out) {
            size_t n = 0;
            check(vdb_exact_search(idx, q, 10, nullptr, nullptr, hits, &n), "vdb_exact_search");
            for (size_t i = 0; i < n; i++)
                out[i] = hits[i].id;
            return n;
        });
    } else {
        for (int ef : a.efs)
            passes(a, d, "llmos", params_of(a, ef), build_s, mem, [&](const float *q, uint64_t *out) {
                size_t n = 0;
                check(vdb_search(idx, q, 10, (size_t)ef, nullptr, nullptr, hits, &n), "vdb_search");
                for (size_t i = 0; i < n; i++)
                    out[i] = hits[i].id;
                return n;
            });
    }
    vdb_free(idx);
}

void run_hnswlib(const Args &a, const Data &d)
{
    double m0 = rss_mb(), t0 = now(), c0 = cpu_s(RUSAGE_SELF);
    hnswlib::SpaceInterface<float> *space;
    if (a.metric == "ip")
        space = new hnswlib::InnerProductSpace(d.dim);
    else
        space = new hnswlib::L2Space(d.dim);
    auto *h = new hnswlib::HierarchicalNSW<float>(space, d.n, (size_t)a.M, (size_t)a.efC, 100);
    h->addPoint(d.base.data(), 0);
    std::atomic<size_t> next(1);
    std::vector<std::thread> th;
    for (int t = 0; t < a.threads; t++)
        th.emplace_back([&] {
            for (size_t i; (i = next++) < d.n;)
                h->addPoint(d.base.data() + i * d.dim, i);
        });
    for (auto &t : th)
        t.join();
    double build_s = now() - t0, mem = rss_mb() - m0;
    fprintf(stderr, "# %s hnswlib build: %.2f CPU seconds\n", a.dataset.c_str(), cpu_s(RUSAGE_SELF) - c0);
    for (int ef : a.efs) {
        h->setEf((size_t)ef);
        passes(a, d, "hnswlib", params_of(a, ef), build_s, mem, [&](const float *q, uint64_t *out) {
            auto pq = h->searchKnn(q, 10);
            size_t n = pq.size();
            for (size_t i = n; i-- > 0;) {
                out[i] = pq.top().second;
                pq.pop();
            }
            return n;
        });
    }
    delete h;
    delete space;
}

void run(const Args &a, const Data &d, const std::string &m)
{
    if (m == "llmos")
        run_llmos(a, d, false);
    else if (m == "exact")
        run_llmos(a, d, true);
    else if (m == "hnswlib")
        run_hnswlib(a, d);
    else
        die("unknown method %s (llmos, hnswlib, exact or all)", m.c_str());
}

} // namespace

int main(int argc, char **argv)
{
    Args a;
    for (int i = 1; i < argc; i++) {
        std::string k = argv[i];
        if (i + 1 >= argc)
            die("%s needs a value", k.c_str());
        std::string v = argv[++i];
        if (k == "--dataset")
            a.dataset = v;
        else if (k == "--base")
            a.base = v;
        else if (k == "--query")
            a.query = v;
        else if (k == "--gt")
            a.gt = v;
        else if (k == "--metric")
            a.metric = v;
        else if (k == "--threads")
            a.threads = atoi(v.c_str());
        else if (k == "--reps")
            a.reps = atoi(v.c_str());
        else if (k == "--M")
            a.M = atoi(v.c_str());
        else if (k == "--efC")
            a.efC = atoi(v.c_str());
        else if (k == "--method")
            a.method = v;
        else if (k == "--ef") {
            a.efs.clear();
            for (const char *p = v.c_str(); *p;) {
                a.efs.push_back(atoi(p));
                p = strchr(p, ',');
                if (!p)
                    break;
                p++;
            }
        } else
            die("unknown option %s", k.c_str());
    }
    if (a.base.empty() || a.query.empty() || a.gt.empty())
        die("%s", "usage: vdb --dataset NAME --base B.fvecs --query Q.fvecs --gt GT.ivecs "
                  "--metric l2|ip [--threads T] [--reps R] [--M 16] [--efC 200] [--ef 32,64,128] "
                  "[--method llmos|hnswlib|exact|all]");
    if ((a.metric != "l2" && a.metric != "ip") || a.threads < 1 || a.reps < 1 || a.efs.empty())
        die("%s", "bad --metric, --threads, --reps or --ef");

    Data d;
    size_t qdim = 0, gn = 0;
    d.base = read_vecs<float>(a.base, &d.n, &d.dim);
    d.query = read_vecs<float>(a.query, &d.nq, &qdim);
    d.gt = read_vecs<int32_t>(a.gt, &gn, &d.gt_k);
    if (qdim != d.dim || gn != d.nq || d.gt_k < 10)
        die("%s", "query dimension, ground-truth count or depth (>= 10) does not match the base");
    fprintf(stderr, "vdb: %s: %zu base x %zu, %zu queries, %d threads, simd family %d\n",
            a.dataset.c_str(), d.n, d.dim, d.nq, a.threads, (int)vdb_simd_best());

    if (a.method != "all") {
        run(a, d, a.method);
        return 0;
    }
    int status = 0;
    for (const char *m : {"llmos", "hnswlib", "exact"}) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            die("%s", "fork failed");
        if (pid == 0) {
            run(a, d, m);
            fflush(stdout);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            status = 1;
    }
    return status;
}
