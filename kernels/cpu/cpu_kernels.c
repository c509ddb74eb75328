/* Run-time choice of the CPU kernel variant. The AVX2 and AVX-512 files are compiled with those
 * instruction sets, so nothing in them may run before the checks here pass; __builtin_cpu_supports also
 * checks that the OS saves the wide registers (XCR0), not only the CPUID bits. */
#include "cpu_kernels.h"

#include <stdlib.h>
#include <string.h>

#include "act_quant.h"
#include "cpu_variants.h"
#include "gemm_packed.h"
#include "matvec_x16.h"

#if defined(__x86_64__) || defined(__i386__)
#define SLM_CPU_X86 1
#include <cpuid.h>
#else
#define SLM_CPU_X86 0
#endif

#if SLM_CPU_X86
/* F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c". */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
}
#endif

static int has_avx2(void) {
#if SLM_CPU_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
#else
    return 0;
#endif
}

static int has_avx512(void) {
#if SLM_CPU_X86
    /* The AVX-512 file also uses AVX2/FMA/F16C instructions and the 256-bit VNNI forms (needs VL). */
    return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

static int isa_usable(slm_cpu_isa isa) {
    switch (isa) {
    case SLM_ISA_SCALAR: return 1;
    case SLM_ISA_AVX2: return has_avx2();
    case SLM_ISA_AVX512: return has_avx512();
    }
    return 0;
}

/* SLM_CPU_ISA=scalar|avx2|avx512 caps the choice (to measure or test a lower variant on a newer CPU);
 * it never raises it above what the CPU has. */
static slm_cpu_isa isa_cap(void) {
    const char *v = getenv("SLM_CPU_ISA");
    if (!v || !*v) return SLM_ISA_AVX512;
    if (!strcmp(v, "scalar")) return SLM_ISA_SCALAR;
    if (!strcmp(v, "avx2")) return SLM_ISA_AVX2;
    return SLM_ISA_AVX512;
}

slm_cpu_isa slm_cpu_isa_detect(void) {
    slm_cpu_isa cap = isa_cap();
    if (cap >= SLM_ISA_AVX512 && has_avx512()) return SLM_ISA_AVX512;
    if (cap >= SLM_ISA_AVX2 && has_avx2()) return SLM_ISA_AVX2;
    return SLM_ISA_SCALAR;
}

const char *slm_cpu_isa_name(slm_cpu_isa isa) {
    switch (isa) {
    case SLM_ISA_SCALAR: return "scalar";
    case SLM_ISA_AVX2: return "avx2";
    case SLM_ISA_AVX512: return "avx512";
    }
    return "unknown";
}

static void quantize_act(slm_dtype wtype, const float *x, void *xq, int64_t k) { slm_act_quantize(wtype, x, xq, k); }

/* The packed GEMM's activations are Q8_32 whatever the weight type: Q8_0 is one type with that format. */
static size_t gemm_act_row_bytes(int64_t k) { return slm_act_row_bytes(SLM_Q8_0, k); }

/* Columns from which the packed GEMM takes over from the mat-vec kernels. Packing and interleaving cost
 * about what 3 (Q4_0) to 5 (Q4_K) columns of the mat-vec path cost (Sapphire Rapids, k = 2048, rows from
 * memory), but up to 8 columns stay on the mat-vec path: they are a server's batched decode (slm serve
 * --parallel 8), and the mat-vec kernels give every column the bits it gets alone, so a request's reply does
 * not depend on how many others run beside it. */
#define SLM_GEMM_MIN_COLS 9
/* The AVX2 GEMM packs its rows with scalar word operations, which costs more: it overtakes the mat-vec
 * path at ~16 columns for Q4_0 and ~24 for Q4_K (2 threads, 1B/3B shapes, SLM_CPU_ISA=avx2). */
#define SLM_GEMM_MIN_COLS_AVX2 24

/* The AVX2 set repacks Q4_0 only: its repacked K-quant kernels (two 8-row halves, 16 registers) decode
 * slower than its row-major ones at one column (3B Q4_K_M at 1 thread 4.7 vs 5.5 tokens/s) and gain
 * little at four (11.8 vs 11.1), while Q4_0 gains a quarter at four columns and holds at one. */
static bool x16_policy_avx2(slm_dtype wtype) { return wtype == SLM_Q4_0 && slm_cpu_matvec_x16_has_avx2(wtype); }

static void gemm_quantize_act_portable(const float *x, void *xq, int64_t k) { slm_act_quantize(SLM_Q8_0, x, xq, k); }

slm_cpu_kernels slm_cpu_kernels_get(slm_cpu_isa isa) {
    while (isa > SLM_ISA_SCALAR && !isa_usable(isa)) isa = (slm_cpu_isa)(isa - 1);
    slm_cpu_kernels k = {.isa = isa, .act_row_bytes = slm_act_row_bytes, .quantize_act = quantize_act};
    switch (isa) {
    case SLM_ISA_AVX512:
        k.matmul = slm_cpu_matmul_avx512;
        k.attend_f16 = slm_cpu_attend_f16_avx512;
        k.gemm_has = slm_cpu_gemm_has_avx512;
        k.gemm_min_cols = SLM_GEMM_MIN_COLS;
        k.gemm_act_row_bytes = gemm_act_row_bytes;
        k.gemm_quantize_act = slm_cpu_gemm_quantize_act_avx512;
        k.gemm_scratch_bytes = slm_cpu_gemm_scratch_bytes_avx512;
        k.gemm = slm_cpu_gemm_avx512;
        k.x16_has = slm_cpu_matvec_x16_has_avx512;
        k.matvec_x16 = slm_cpu_matvec_x16_avx512;
        break;
    case SLM_ISA_AVX2:
        k.matmul = slm_cpu_matmul_avx2;
        k.attend_f16 = slm_cpu_attend_f16_avx2;
        k.gemm_has = slm_cpu_gemm_has_avx2;
        k.gemm_min_cols = SLM_GEMM_MIN_COLS_AVX2;
        k.gemm_act_row_bytes = gemm_act_row_bytes;
        k.gemm_quantize_act = gemm_quantize_act_portable;
        k.gemm_scratch_bytes = slm_cpu_gemm_scratch_bytes_avx2;
        k.gemm = slm_cpu_gemm_avx2;
        k.x16_has = x16_policy_avx2;
        k.matvec_x16 = slm_cpu_matvec_x16_avx2;
        break;
    default:
        k.isa = SLM_ISA_SCALAR;
        k.matmul = slm_cpu_matmul_scalar;
        k.attend_f16 = slm_cpu_attend_f16_scalar;
        break;
    }
    return k;
}
