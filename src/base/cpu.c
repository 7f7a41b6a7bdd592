/*
 * cpu.c - run-time detection of the x86-64 SIMD features the kernels use.
 *
 * A feature counts only when the CPU reports it (CPUID) and the OS saves the registers it needs
 * (XCR0 via XGETBV): AVX needs XMM|YMM state (bits 1-2), AVX-512 also opmask/ZMM state (bits
 * 5-7), AMX also XTILECFG/XTILEDATA (bits 17-18) and, on Linux, a per-process permission
 * requested with arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA). Bit positions are from
 * the Intel SDM vol. 2A, CPUID leaf 07H.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "llmos/base.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define LLMOS_X86 1
#endif

static llmos_cpu cpu;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

#ifdef LLMOS_X86
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static bool amx_permitted(void)
{
#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA  18
    unsigned long bitmask = 0;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return false;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bitmask) != 0)
        return false;
    return (bitmask & (1ul << XFEATURE_XTILEDATA)) != 0;
}

static void detect_x86(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    bool osxsave = c & (1u << 27);
    bool has_avx = c & (1u << 28);
    bool fma = c & (1u << 12);
    bool f16c = c & (1u << 29);
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool os_avx = (xcr0 & 0x6) == 0x6;
    bool os_avx512 = (xcr0 & 0xE6) == 0xE6;
    bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);

    unsigned max_leaf = __get_cpuid_max(0, NULL);
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b7, c7, d7);
        unsigned b71, c71, d71;
        __cpuid_count(7, 1, a71, b71, c71, d71);
        (void)b71, (void)c71, (void)d71;
    }
    if (os_avx && has_avx) {
        cpu.avx2 = b7 & (1u << 5);
        cpu.fma = fma;
        cpu.f16c = f16c;
        cpu.avx_vnni = a71 & (1u << 4);
    }
    if (os_avx512) {
        cpu.avx512f = b7 & (1u << 16);
        cpu.avx512bw = b7 & (1u << 30);
        cpu.avx512vl = b7 & (1u << 31);
        cpu.avx512vnni = c7 & (1u << 11);
        cpu.avx512bf16 = a71 & (1u << 5);
    }
    bool amx_tile = d7 & (1u << 24);
    if (os_amx && amx_tile && amx_permitted()) {
        cpu.amx_tile = true;
        cpu.amx_bf16 = d7 & (1u << 22);
        cpu.amx_int8 = d7 & (1u << 25);
    }
    unsigned regs[12];
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2],
                        &regs[4 * i + 3]);
        memcpy(cpu.brand, regs, 48);
        cpu.brand[48] = '\0';
        /* trim the padding some vendors put around the brand string */
        char *s = cpu.brand;
        while (*s == ' ')
            s++;
        memmove(cpu.brand, s, strlen(s) + 1);
        for (size_t n = strlen(cpu.brand); n > 0 && cpu.brand[n - 1] == ' '; n--)
            cpu.brand[n - 1] = '\0';
    }
}
#endif

static void detect(void)
{
#ifdef LLMOS_X86
    detect_x86();
#endif
    cpu_set_t set;
    cpu.n_cpus = 1;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        cpu.n_cpus = CPU_COUNT(&set);
    else if (sysconf(_SC_NPROCESSORS_ONLN) > 0)
        cpu.n_cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (!cpu.brand[0])
        snprintf(cpu.brand, sizeof cpu.brand, "unknown");
}

const llmos_cpu *llmos_cpu_features(void)
{
    pthread_once(&cpu_once, detect);
    return &cpu;
}

void llmos_cpu_features_string(const llmos_cpu *c, char *out, size_t size)
{
    struct {
        bool on;
        const char *name;
    } f[] = {
        {c->avx2, "avx2"},
        {c->fma, "fma"},
        {c->f16c, "f16c"},
        {c->avx_vnni, "avx-vnni"},
        {c->avx512f, "avx512f"},
        {c->avx512bw, "avx512bw"},
        {c->avx512vl, "avx512vl"},
        {c->avx512vnni, "avx512vnni"},
        {c->avx512bf16, "avx512bf16"},
        {c->amx_tile, "amx-tile"},
        {c->amx_int8, "amx-int8"},
        {c->amx_bf16, "amx-bf16"},
    };
    size_t used = 0;
    if (size == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(f); i++) {
        if (!f[i].on)
            continue;
        int n = snprintf(out + used, size - used, "%s%s", used ? " " : "", f[i].name);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(out, size, "none");
}
