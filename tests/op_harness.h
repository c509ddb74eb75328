/* A device-generic op test harness: for an opened slm_device, every op kind and every weight type is run
 * through slm_device_run on seeded random data at several shapes (including sizes that are not a multiple
 * of any workgroup or tile), downloaded, and compared with kernels/ref by normalised mean squared error.
 *
 * Use:
 *   slm_harness h;
 *   slm_harness_init(&h, dev);            // defaults: thresholds below, every check required
 *   slm_harness_run_all(&h);              // or slm_harness_matmul(&h, SLM_Q4_K, 512, 67, 3, true) ...
 *   return slm_harness_finish(&h, "test_x");
 *
 * Every operand lives at a byte offset inside its buffer that is a multiple of 4 but not of 16 (h.offset;
 * a test may set a 16-aligned one to reach a backend's aligned fast paths), so backends that bind aligned
 * ranges must handle the remainder. An op the device reports unsupported counts as a
 * failure when h.require_all is set (the default), else as a skip.
 *
 * The code is in op_harness.c, built once as the slm_op_harness library. Its failures count in h->n_fail
 * (its CHECK messages go to stderr as in a test, but into that file's own slm_test_failures), so a test
 * must end every harness with slm_harness_finish, which adds them to the test's counter. */
#ifndef SLM_OP_HARNESS_H
#define SLM_OP_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "test_util.h"

#define SLM_HARNESS_OFFSET 36 /* operand offset inside its buffer: 4-aligned, not 16-aligned */

typedef struct slm_harness {
    slm_device *dev;
    uint64_t seed;
    bool require_all; /* an unsupported op is a failure (else a skip) */
    bool verbose;     /* one line per check */
    /* NMSE limits by precision. The device sees exactly the quantized weights and f16 cache the reference
     * sees, so only accumulation order (and activation quantization on backends that do it) differ. */
    double tol_matmul_float; /* f32 / f16 / bf16 weights */
    double tol_matmul_quant; /* block-quantized weights */
    double tol_f32;          /* embed, rmsnorm, rope, add, swiglu */
    double tol_rope_long;    /* rope at 4k and 128k positions (slm_harness_run_long_positions) */
    double tol_kv;           /* f32 -> f16 cache rows (rounding mode may differ) */
    double tol_attn;
    size_t offset; /* byte offset of every operand in its buffer (default SLM_HARNESS_OFFSET) */
    /* What the device does to one activation column of a mat-mul of weight type wtype and width T before it
     * multiplies (e.g. 8-bit quantization), applied to the reference's copy of the column so that the two
     * multiply the same values; NULL: nothing. Used by slm_harness_matmul(_ex) and slm_harness_chain. */
    void (*matmul_act)(slm_dtype wtype, int64_t K, int64_t T, float *col);
    /* bit k set: op kind k is not the device's by design (the graph keeps it on the host, e.g. the CUDA
     * backend has no embedding lookup); slm_harness_run_all leaves it out instead of failing it */
    uint32_t host_only_kinds;
    int n_pass, n_fail, n_skip;
    double op_seconds[SLM_OP_KIND_COUNT]; /* wall time of run + sync per kind (includes submission) */
    int op_count[SLM_OP_KIND_COUNT];
} slm_harness;

void slm_harness_init(slm_harness *h, slm_device *dev);

/* ---- building blocks (for a test's own checks) -------------------------------------------------------- */

typedef struct slm_harness_buf {
    slm_buffer buf;
    bool live;
} slm_harness_buf;

/* Allocates bytes (+ the offset) and uploads data (when not NULL) at h->offset. */
bool slm_harness_alloc(slm_harness *h, slm_harness_buf *b, const void *data, size_t bytes);
void slm_harness_free(slm_harness *h, slm_harness_buf *b);
bool slm_harness_download(slm_harness *h, slm_harness_buf *b, void *out, size_t bytes);
/* Runs the ops as one split and waits. False (and a message) on any error. */
bool slm_harness_exec(slm_harness *h, const slm_op *ops, int n, const char *what);
/* One check: NMSE of got against want within tol, and no NaN; counts a pass or a failure. */
void slm_harness_judge(slm_harness *h, const char *what, const float *got, const float *want, int64_t n, double tol);
uint64_t *slm_harness_rng(slm_harness *h);
/* Random weight matrix [K, N] of type t: returns the encoded bytes (row r at r * row_bytes; caller frees). */
void *slm_harness_weights(slm_harness *h, slm_dtype t, int64_t K, int64_t N, size_t *row_bytes);

/* ---- one check per op kind --------------------------------------------------------------------------- */

/* dst [N, T] = W [K, N] . x [K, T] (+ bias [N]) */
void slm_harness_matmul(slm_harness *h, slm_dtype t, int64_t K, int64_t N, int64_t T, bool bias);
/* The same with the random activations edited first (e.g. values beyond f16's range) and, with per_column,
 * every output checked finite and each column judged alone (so that large columns cannot hide the others),
 * against tol (0: the weight type's usual tolerance). label names the check ("matmul" when NULL). */
typedef struct slm_harness_matmul_opts {
    const char *label;
    void (*shape_x)(float *x, int64_t K, int64_t T);
    bool per_column;
    double tol;
} slm_harness_matmul_opts;
void slm_harness_matmul_ex(slm_harness *h, slm_dtype t, int64_t K, int64_t N, int64_t T, bool bias,
                           const slm_harness_matmul_opts *o);
/* dst [n_embd, T] = rows ids[t] of a [n_embd, n_vocab] table of type t */
void slm_harness_embed(slm_harness *h, slm_dtype t, int64_t n_embd, int64_t n_vocab, int64_t T);
/* The same times scale (p.embed.scale: Gemma's sqrt(n_embd)). */
void slm_harness_embed_scaled(slm_harness *h, slm_dtype t, int64_t n_embd, int64_t n_vocab, int64_t T, float scale);
void slm_harness_rmsnorm(slm_harness *h, int64_t n, int64_t T);
/* qwen3's per-head norm: x [hd*n_head, T] normalized in place as [hd, n_head*T], one weight for every head. */
void slm_harness_rmsnorm_heads(slm_harness *h, int64_t hd, int64_t n_head, int64_t T);
/* In place on [head_dim, n_head, T]; positions pos0, pos0 + 7, ... (not consecutive, to catch indexing). */
void slm_harness_rope(slm_harness *h, int hd, int n_head, int64_t T, int n_rot, bool neox, bool factors, int pos0);
/* Writes T columns into rows pos of an f16 cache [n, n_ctx] that holds other data; checks every row. Rows
 * are `pad` halves apart beyond n (the KV cache pads its rows, see slm_kv_row_bytes); the padding must stay. */
void slm_harness_kv_write(slm_harness *h, int64_t n, int64_t n_ctx, int64_t T, int pos0, int64_t pad);
/* T query tokens at positions pos0..pos0+T-1 over a random f16 cache of n_ctx rows (rows past a token's
 * position hold garbage that must be masked), rows `pad` halves apart beyond the heads (NaN there: a kernel
 * that reads the padding fails). */
void slm_harness_attention(slm_harness *h, int hd, int n_head, int n_head_kv, int64_t n_ctx, int64_t T, int pos0,
                           int64_t pad);
/* The same with token t at pos[t], any order: the reference clamps positions to n_ctx - 1 and gives 0 for a
 * token at pos < 0 (the CUDA kernels' contract). label names the positions in the log. */
void slm_harness_attention_pos(slm_harness *h, int hd, int n_head, int n_head_kv, int64_t n_ctx, int64_t T,
                               const int32_t *pos, int64_t pad, const char *label);
/* The same over a sliding window of `window` positions (p.attn.window): token t sees rows
 * max(0, pos - window + 1)..pos, the rows before it hold values that must not count. */
void slm_harness_attention_window(slm_harness *h, int hd, int n_head, int n_head_kv, int64_t n_ctx, int64_t T, int pos0,
                                  int64_t pad, int window);
/* SWIGLU or GEGLU (dst separate) or ADD (in place: dst is src0). */
void slm_harness_eltwise(slm_harness *h, slm_op_kind kind, int64_t n, int64_t T);
/* A dependent chain in ONE split, so a backend that records a split must order it (barriers):
 *   n = rmsnorm(x) * w;  y = W n (+bias);  x += y;  g = swiglu(x, x);  x2 = W g;  x2 += x
 * with K = N (square weight). The ops read and write overlapping buffers, in place included. */
void slm_harness_chain(slm_harness *h, slm_dtype t, int64_t n, int64_t T);

/* ---- the whole suite --------------------------------------------------------------------------------- */

#define SLM_HARNESS_N_WTYPES 11
extern const slm_dtype slm_harness_weight_types[SLM_HARNESS_N_WTYPES];

void slm_harness_run_matmuls(slm_harness *h, slm_dtype t);
/* Prompt-batch shapes (what tiled kernels get): rows, tokens and K off every tile size. Kept apart from
 * slm_harness_run_matmuls, after the rest of the suite, so the seeded data of the older checks is unchanged. */
void slm_harness_run_batches(slm_harness *h, slm_dtype t);
void slm_harness_run_all(slm_harness *h);
/* Long positions: RoPE near 131072 and 4096, and prompt batches above 8 tokens writing and attending at
 * ~4k rows of a padded cache. Apart from slm_harness_run_all so that its seeded data stays as it was. */
void slm_harness_run_long_positions(slm_harness *h);

/* What Gemma 3 added: GeGLU, scaled embeddings (unless host_only_kinds has EMBED), per-head norms of 256,
 * sliding-window attention at decode and in prompt batches. Apart from slm_harness_run_all so that the
 * older checks' seeded data stays as it was. */
void slm_harness_run_gemma(slm_harness *h);

/* Quantized KV caches (-ctk / -ctv). kv_write of T columns into rows pos0.. of a cache of type t [n, n_ctx]
 * whose rows are `pad` bytes apart beyond their blocks (0x7e there and in the untouched rows must stay): the
 * written rows must be slm_ref_quantize_row's bytes exactly. */
void slm_harness_kv_write_type(slm_harness *h, slm_dtype t, int64_t n, int64_t n_ctx, int64_t T, int pos0, size_t pad);
/* Attention over K and V caches of types kt and vt (quantized from random rows; rows `pad` bytes apart beyond
 * their blocks, 0x7e bytes there: an f16 NaN), T tokens at pos0.. (window as p.attn.window), against
 * slm_ref_attention_kv. */
void slm_harness_attention_kv(slm_harness *h, slm_dtype kt, slm_dtype vt, int hd, int n_head, int n_head_kv,
                              int64_t n_ctx, int64_t T, int pos0, size_t pad, int window);
/* The quantized KV suite: writes and attention at 1 to 5000 positions, head sizes 64, 96 and 128, groups of 1
 * to 12 query heads per KV head (and prompt batches sharing a pass), mixed K and V types, windows, padded rows. A device that has no kernel for a
 * quantized cache must refuse it (supports() false): each of those counts as a skip, not a failure. */
void slm_harness_run_kv_types(slm_harness *h);

/* Prints the summary line and per-kind wall times. */
void slm_harness_report(const slm_harness *h, const char *name);

/* Prints the summary, adds the harness's failures to this test's counter (test_util.h's slm_test_failures,
 * one per translation unit: hence inline here, not in op_harness.c) and returns the test's exit code.
 * Call it once per harness. */
static inline int slm_harness_finish(slm_harness *h, const char *name) {
    slm_harness_report(h, name);
    slm_test_failures += h->n_fail;
    if (h->n_pass == 0 && h->n_fail == 0) {
        fprintf(stderr, "%s: nothing was checked\n", name);
        return 1;
    }
    return slm_test_finish(name);
}

#endif
