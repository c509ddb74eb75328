/* Causal grouped-query attention over the f16 KV cache with online softmax, in two kernels chosen by the
 * batch width T. Both read token t's visible length from pos[] on the device (a CUDA graph captured once is
 * replayed with new positions): keys 0..pos[t] clamped to n_ctx - 1, none when pos[t] < 0 (output 0); with a
 * sliding window (a.window > 0) only the last a.window of those, and the key tiles wholly before it are
 * skipped.
 *
 * Decode (T == 1), split-K flash-decoding, grid (n_head, n_split, 1), ATT_THREADS threads: block (h, s) takes
 * the key tiles s, s + n_split, s + 2 n_split, ... (ATT_TILE keys each), dealt round-robin so the work is even
 * whatever the length, and keeps a running max m, a running sum l and an unnormalised output acc[head_dim];
 * it writes (m, l, acc) to the partial buffer. Each warp scores keys (lanes over head_dim, then a warp sum);
 * each thread owns output dims tid and tid + ATT_THREADS. A decode step has a single query per head, and the
 * split over many blocks per head is what fills the GPU.
 *
 * Prompt batches (T > 1), attn_tile_kernel: the queries that share a KV head are its G = n_head / n_head_kv
 * query heads times the T tokens, numbered r = t * G + g; block (x, kh, s) takes the ROWS consecutive ones
 * from x * ROWS, so a tile is whole GQA groups of consecutive tokens (or part of one group when G > ROWS).
 * It stages each key tile of K, then of V, in shared memory once for all of its queries, which divides the
 * cache traffic by up to ROWS. The key range is the union of the tile's visible ranges; each query masks the
 * keys beyond its own pos. When too few blocks would fill the GPU, the key tiles are also dealt round-robin
 * over n_split blocks as in decode, and the merge kernel sums the partials.
 *
 * attn_merge_kernel, grid (n_head, T): rescales and sums the n_split partials of each (head, token). */
#include <limits.h>
#include <math.h>

#include "cuda_common.cuh"

#define ATT_TILE 32
#define ATT_THREADS 128
#define ATT_WARPS (ATT_THREADS / 32)
#define ATT_DIMS_PER_THREAD (SLM_CUDA_ATTN_MAX_HEAD_DIM / ATT_THREADS)

/* A K or V element of the f16 cache, reported to the emulator's load accounting. */
__device__ __forceinline__ float ld_kv(const uint16_t *p) {
    SLM_NOTE_LOAD(p, 2);
    return __half2float(__ushort_as_half(*p));
}

/* Decode: one block per query head leaves a GPU mostly idle; the key split fills it. */
static int attn_decode_splits(int64_t n_ctx) {
    int64_t tiles = (n_ctx + ATT_TILE - 1) / ATT_TILE;
    return (int)(tiles < 32 ? (tiles > 0 ? tiles : 1) : 32);
}

/* Prompt tiles. A tile's queries live in shared memory as floats (ROWS x head_dim), the K or V tile as f16,
 * the scores as ROWS x ATT_TILE floats: the rows per tile shrink as head_dim grows so that the three stay
 * within the 48 KiB of static shared memory, and each thread keeps ROWS / ATT_WARPS x head_dim / 32
 * accumulators in registers. */
static int attn_tile_rows(int head_dim) { return head_dim <= 64 ? 64 : (head_dim <= 128 ? 32 : 16); }

/* Blocks below which a prompt batch also splits its keys (a few waves of a large GPU), the most splits, and
 * the fewest keys a split should get for the partials' round trip through memory to pay off. */
#define ATT_FILL_BLOCKS 256
#define ATT_MAX_SPLIT 16
#define ATT_MIN_SPLIT_KEYS 256

/* The block count is estimated from n_head alone (KV heads x query tiles, exact when ROWS divides T G), so
 * that slm_cuda_attention_scratch_floats, which has only these sizes, gives what is launched. Rounding the
 * split down keeps a split launch within ATT_FILL_BLOCKS blocks' worth of query rows, which bounds the
 * partials whatever the batch. */
static int attn_tile_splits(int head_dim, int n_head, int64_t T, int64_t n_ctx) {
    const int64_t rows = attn_tile_rows(head_dim);
    const int64_t blocks = (T * n_head + rows - 1) / rows;
    int64_t want = ATT_FILL_BLOCKS / blocks;
    int64_t most = n_ctx / ATT_MIN_SPLIT_KEYS;
    if (most > ATT_MAX_SPLIT) most = ATT_MAX_SPLIT;
    if (want > most) want = most;
    return want > 1 ? (int)want : 1;
}

__global__ void __launch_bounds__(ATT_THREADS) attn_split_kernel(slm_cuda_attn_args a, int n_split) {
    __shared__ float q_s[SLM_CUDA_ATTN_MAX_HEAD_DIM];
    __shared__ float s_s[ATT_TILE];
    const int h = blockIdx.x, split = blockIdx.y;
    const int64_t t = blockIdx.z;
    const int hd = a.head_dim, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kh = h / (a.n_head / a.n_head_kv);
    const float *q = a.q + t * a.ldq + (int64_t)h * hd;
    for (int i = tid; i < hd; i += ATT_THREADS) q_s[i] = q[i] * a.scale;
    __syncthreads();

    int64_t last = a.pos[t];
    if (last > a.n_ctx - 1) last = a.n_ctx - 1;
    const int64_t n_keys = last + 1; /* <= 0 when pos < 0: nothing visible */
    const int64_t first = a.window > 0 && n_keys > a.window ? n_keys - a.window : 0; /* the window's first key */
    const int64_t n_tiles = n_keys > 0 ? (n_keys + ATT_TILE - 1) / ATT_TILE : 0;
    const uint16_t *kbase = a.k + (int64_t)kh * hd;
    const uint16_t *vbase = a.v + (int64_t)kh * hd;

    float m = -INFINITY, l = 0.0f;
    float acc[ATT_DIMS_PER_THREAD];
#pragma unroll
    for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) acc[j] = 0.0f;

    for (int64_t tile = first / ATT_TILE + split; tile < n_tiles; tile += n_split) {
        const int64_t p0 = tile * ATT_TILE;
        for (int kk = warp; kk < ATT_TILE; kk += ATT_WARPS) {
            const int64_t p = p0 + kk;
            float sc = -INFINITY;
            if (p >= first && p < n_keys) {
                const uint16_t *kr = kbase + p * a.ldk;
                float d = 0.0f;
                for (int i = lane; i < hd; i += 32) d += q_s[i] * ld_kv(kr + i);
                sc = warp_sum(d);
            }
            if (lane == 0) s_s[kk] = sc;
        }
        __syncthreads();
        float tmax = -INFINITY;
        for (int kk = 0; kk < ATT_TILE; kk++) tmax = fmaxf(tmax, s_s[kk]);
        const float m_new = fmaxf(m, tmax); /* finite: the tile holds a visible key (p0, or the window's first) */
        const float corr = expf(m - m_new); /* 0 on the first tile (m = -inf) */
        l *= corr;
#pragma unroll
        for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) acc[j] *= corr;
        const int n_in = (int)(n_keys - p0 < ATT_TILE ? n_keys - p0 : ATT_TILE);
        for (int kk = p0 < first ? (int)(first - p0) : 0; kk < n_in; kk++) {
            const float e = expf(s_s[kk] - m_new);
            l += e;
            const uint16_t *vr = vbase + (p0 + kk) * a.ldv;
#pragma unroll
            for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) {
                const int d = tid + j * ATT_THREADS;
                if (d < hd) acc[j] += e * ld_kv(vr + d);
            }
        }
        m = m_new;
        __syncthreads(); /* s_s is rewritten by the next tile */
    }

    float *part = a.partial + (((size_t)t * a.n_head + h) * n_split + split) * (size_t)(hd + 2);
    if (tid == 0) {
        part[0] = m;
        part[1] = l;
    }
#pragma unroll
    for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) {
        const int d = tid + j * ATT_THREADS;
        if (d < hd) part[2 + d] = acc[j];
    }
}

/* Key rows p0 .. p0 + n_in - 1 of one KV head (base) into dst, ks halves apart; the rest of the tile is
 * zeroed so that no stale value reaches a score or an output. */
__device__ __forceinline__ void attn_stage_tile(uint16_t *dst, const uint16_t *base, int64_t ld, int64_t p0, int n_in,
                                                int hd, int ks) {
    for (int i = threadIdx.x; i < ATT_TILE * hd; i += ATT_THREADS) {
        const int kk = i / hd, d = i - kk * hd;
        uint16_t x = 0;
        if (kk < n_in) {
            const uint16_t *p = base + (p0 + kk) * ld + d;
            SLM_NOTE_LOAD(p, 2);
            x = *p;
        }
        dst[kk * ks + d] = x;
    }
}

__device__ __forceinline__ float h2f(uint16_t x) { return __half2float(__ushort_as_half(x)); }

/* Prompt batches, grid (query tiles, n_head_kv, n_split): see the top of the file. Thread (warp, lane) scores
 * key lane of the tile for the query rows warp, warp + ATT_WARPS, ... and accumulates their output dims lane,
 * lane + 32, ...; threads tid < ROWS keep row tid's running max and sum and turn its scores into weights. */
template <int ROWS, int MAXD>
__global__ void __launch_bounds__(ATT_THREADS) attn_tile_kernel(slm_cuda_attn_args a, int n_split) {
    constexpr int RPW = ROWS / ATT_WARPS, DPL = MAXD / 32;
    __shared__ float q_s[ROWS * MAXD];               /* scaled queries, row r at r * head_dim */
    __shared__ uint16_t kv_s[ATT_TILE * (MAXD + 2)]; /* the K tile, then the V tile */
    __shared__ float s_s[ROWS * ATT_TILE];           /* scores, then softmax weights */
    __shared__ float corr_s[ROWS], m_s[ROWS], l_s[ROWS];
    __shared__ int last_s[ROWS];  /* last visible key of each row, -1 for none (and for rows past the batch) */
    __shared__ int first_s[ROWS]; /* first visible key of each row (its window's), INT_MAX for none */

    const int hd = a.head_dim, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int G = a.n_head / a.n_head_kv, kh = blockIdx.y, split = blockIdx.z;
    const int64_t r0 = (int64_t)blockIdx.x * ROWS, n_rows = a.T * G;
    /* An odd number of 32-bit words per staged row: the 32 lanes scoring 32 keys read 32 different banks. */
    int ks = (hd + 1) & ~1;
    if ((ks / 2) % 2 == 0) ks += 2;

    for (int i = tid; i < ROWS * hd; i += ATT_THREADS) {
        const int r = i / hd, d = i - r * hd;
        const int64_t R = r0 + r;
        float x = 0.0f;
        if (R < n_rows) {
            const int64_t t = R / G;
            const int64_t h = (int64_t)kh * G + (R - t * G);
            x = a.q[t * a.ldq + h * hd + d] * a.scale;
        }
        q_s[i] = x;
    }
    if (tid < ROWS) {
        const int64_t R = r0 + tid;
        int64_t last = -1;
        if (R < n_rows) {
            last = a.pos[R / G];
            if (last > a.n_ctx - 1) last = a.n_ctx - 1;
            if (last < -1) last = -1;
        }
        last_s[tid] = (int)last;
        first_s[tid] = last < 0 ? INT_MAX : a.window > 0 && last + 1 > a.window ? (int)(last + 1 - a.window) : 0;
    }
    __syncthreads();

    int64_t n_keys = 0, k_lo = INT_MAX; /* the union of the rows' visible ranges: k_lo .. n_keys - 1 */
    for (int r = 0; r < ROWS; r++) {
        n_keys = last_s[r] + 1 > n_keys ? last_s[r] + 1 : n_keys;
        k_lo = first_s[r] < k_lo ? first_s[r] : k_lo;
    }
    const int64_t n_tiles = (n_keys + ATT_TILE - 1) / ATT_TILE;
    int last_i[RPW], first_i[RPW];
#pragma unroll
    for (int i = 0; i < RPW; i++) {
        last_i[i] = last_s[warp + ATT_WARPS * i];
        first_i[i] = first_s[warp + ATT_WARPS * i];
    }
    const uint16_t *kbase = a.k + (int64_t)kh * hd, *vbase = a.v + (int64_t)kh * hd;

    float m = -INFINITY, l = 0.0f; /* row tid's, for tid < ROWS */
    float acc[RPW][DPL];
#pragma unroll
    for (int i = 0; i < RPW; i++)
#pragma unroll
        for (int j = 0; j < DPL; j++) acc[i][j] = 0.0f;

    for (int64_t tile = (n_tiles > 0 ? k_lo / ATT_TILE : 0) + split; tile < n_tiles; tile += n_split) {
        const int64_t p0 = tile * ATT_TILE;
        const int n_in = (int)(n_keys - p0 < ATT_TILE ? n_keys - p0 : ATT_TILE);
        attn_stage_tile(kv_s, kbase, a.ldk, p0, n_in, hd, ks);
        __syncthreads();
        float sc[RPW];
#pragma unroll
        for (int i = 0; i < RPW; i++) sc[i] = 0.0f;
        for (int d = 0; d < hd; d++) {
            const float kd = h2f(kv_s[lane * ks + d]);
#pragma unroll
            for (int i = 0; i < RPW; i++) sc[i] += q_s[(warp + ATT_WARPS * i) * hd + d] * kd;
        }
        /* a select, not a product: a masked key's score may be NaN (a cache row nobody wrote) */
#pragma unroll
        for (int i = 0; i < RPW; i++)
            s_s[(warp + ATT_WARPS * i) * ATT_TILE + lane] =
                p0 + lane <= last_i[i] && p0 + lane >= first_i[i] ? sc[i] : -INFINITY;
        __syncthreads();
        attn_stage_tile(kv_s, vbase, a.ldv, p0, n_in, hd, ks); /* the K tile is no longer read */
        if (tid < ROWS) {
            float *sr = s_s + tid * ATT_TILE;
            float tmax = -INFINITY;
            for (int kk = 0; kk < ATT_TILE; kk++) tmax = fmaxf(tmax, sr[kk]);
            const float m_new = fmaxf(m, tmax);
            float corr = 1.0f, sum = 0.0f;
            if (m_new == -INFINITY) { /* no key of this row seen yet */
                for (int kk = 0; kk < ATT_TILE; kk++) sr[kk] = 0.0f;
            } else {
                corr = expf(m - m_new); /* 0 while m = -inf */
                for (int kk = 0; kk < ATT_TILE; kk++) {
                    const float e = expf(sr[kk] - m_new);
                    sr[kk] = e;
                    sum += e;
                }
            }
            l = l * corr + sum;
            m = m_new;
            corr_s[tid] = corr;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < RPW; i++) {
            const float c = corr_s[warp + ATT_WARPS * i];
#pragma unroll
            for (int j = 0; j < DPL; j++) acc[i][j] *= c;
        }
        for (int kk = 0; kk < n_in; kk++) {
            float v[DPL];
#pragma unroll
            for (int j = 0; j < DPL; j++) {
                const int d = lane + 32 * j;
                v[j] = d < hd ? h2f(kv_s[kk * ks + d]) : 0.0f;
            }
#pragma unroll
            for (int i = 0; i < RPW; i++) {
                if (p0 + kk > last_i[i] || p0 + kk < first_i[i]) continue; /* masked: its V row may be NaN */
                const float w = s_s[(warp + ATT_WARPS * i) * ATT_TILE + kk];
#pragma unroll
                for (int j = 0; j < DPL; j++) acc[i][j] += w * v[j];
            }
        }
        __syncthreads(); /* kv_s and s_s are rewritten by the next tile */
    }

    if (tid < ROWS) {
        m_s[tid] = m;
        l_s[tid] = l;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < RPW; i++) {
        const int r = warp + ATT_WARPS * i;
        const int64_t R = r0 + r;
        if (R >= n_rows) continue;
        const int64_t t = R / G;
        const int64_t h = (int64_t)kh * G + (R - t * G);
        if (n_split == 1) {
            const float inv = l_s[r] > 0.0f ? 1.0f / l_s[r] : 0.0f;
            float *o = a.out + t * a.ldo + h * hd;
#pragma unroll
            for (int j = 0; j < DPL; j++)
                if (lane + 32 * j < hd) o[lane + 32 * j] = acc[i][j] * inv;
        } else {
            float *part = a.partial + (((size_t)t * a.n_head + h) * n_split + split) * (size_t)(hd + 2);
            if (lane == 0) {
                part[0] = m_s[r];
                part[1] = l_s[r];
            }
#pragma unroll
            for (int j = 0; j < DPL; j++)
                if (lane + 32 * j < hd) part[2 + lane + 32 * j] = acc[i][j];
        }
    }
}

__global__ void __launch_bounds__(ATT_THREADS) attn_merge_kernel(slm_cuda_attn_args a, int n_split) {
    const int h = blockIdx.x, hd = a.head_dim;
    const int64_t t = blockIdx.y;
    const float *part = a.partial + ((size_t)t * a.n_head + h) * n_split * (size_t)(hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++)
        if (part[s * (hd + 2) + 1] > 0.0f) M = fmaxf(M, part[s * (hd + 2)]);
    float L = 0.0f;
    for (int s = 0; s < n_split; s++) {
        const float ls = part[s * (hd + 2) + 1];
        if (ls > 0.0f) L += ls * expf(part[s * (hd + 2)] - M);
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    float *out = a.out + t * a.ldo + (int64_t)h * hd;
    for (int d = threadIdx.x; d < hd; d += ATT_THREADS) {
        float o = 0.0f;
        for (int s = 0; s < n_split; s++) {
            const float ls = part[s * (hd + 2) + 1];
            if (ls > 0.0f) o += part[s * (hd + 2) + 2 + d] * expf(part[s * (hd + 2)] - M);
        }
        out[d] = o * inv;
    }
}

/* Floats of partials one launch over T tokens writes. */
static size_t attn_partial_floats(int head_dim, int n_head, int64_t T, int64_t n_ctx) {
    const int n_split = T == 1 ? attn_decode_splits(n_ctx) : attn_tile_splits(head_dim, n_head, T, n_ctx);
    if (T > 1 && n_split == 1) return 0; /* the prompt kernel writes the output itself */
    return (size_t)T * (size_t)n_head * (size_t)n_split * (size_t)(head_dim + 2);
}

/* The planner sizes the backend's working memory once, with the widest batch (n_batch tokens), but a
 * narrower prompt batch splits its keys more ways: the most any width 1..T needs. The splits never grow
 * with T, so once a width runs unsplit no wider one needs partials and the scan stops. */
extern "C" size_t slm_cuda_attention_scratch_floats(int head_dim, int n_head, int64_t T, int64_t n_ctx) {
    if (head_dim < 1 || n_head < 1 || T < 1) return 0;
    size_t most = 0;
    for (int64_t t = 1; t <= T; t++) {
        const size_t f = attn_partial_floats(head_dim, n_head, t, n_ctx);
        if (f > most) most = f;
        if (t > 1 && f == 0) break;
    }
    return most;
}

template <int ROWS, int MAXD>
static slm_status attn_tile_launch(const slm_cuda_attn_args *a, int n_split, cudaStream_t s, slm_error *err) {
    const int64_t n_tiles = (a->T * (a->n_head / a->n_head_kv) + ROWS - 1) / ROWS;
    void (*tile_kernel)(slm_cuda_attn_args, int) = attn_tile_kernel<ROWS, MAXD>;
    SLM_LAUNCH(tile_kernel, dim3((unsigned)n_tiles, (unsigned)a->n_head_kv, (unsigned)n_split), ATT_THREADS, 0, s)
    (*a, n_split);
    return slm_cu_launched("attention", err);
}

extern "C" slm_status slm_cuda_attention(const slm_cuda_attn_args *a, cudaStream_t s, slm_error *err) {
    SLM_CU_REQUIRE(a->q && a->k && a->v && a->pos && a->out, "cuda attention: missing operand");
    SLM_CU_REQUIRE(a->head_dim >= 1 && a->head_dim <= SLM_CUDA_ATTN_MAX_HEAD_DIM,
                   "cuda attention: head_dim=%d outside 1..%d", a->head_dim, SLM_CUDA_ATTN_MAX_HEAD_DIM);
    SLM_CU_REQUIRE(a->n_head >= 1 && a->n_head_kv >= 1 && a->n_head % a->n_head_kv == 0 && a->n_head <= 65535,
                   "cuda attention: n_head=%d is not a multiple of n_head_kv=%d", a->n_head, a->n_head_kv);
    SLM_CU_REQUIRE(a->T >= 1 && a->T <= 65535 && a->n_ctx >= 1, "cuda attention: T=%lld n_ctx=%lld", (long long)a->T,
                   (long long)a->n_ctx);
    SLM_CU_REQUIRE(a->ldk >= (int64_t)a->head_dim * a->n_head_kv && a->ldv >= (int64_t)a->head_dim * a->n_head_kv,
                   "cuda attention: cache row strides too small");
    SLM_CU_REQUIRE(a->T == 1 ||
                       (a->ldq >= (int64_t)a->head_dim * a->n_head && a->ldo >= (int64_t)a->head_dim * a->n_head),
                   "cuda attention: q/out column strides too small");
    SLM_CU_REQUIRE((uintptr_t)a->k % 2 == 0 && (uintptr_t)a->v % 2 == 0,
                   "cuda attention: cache must be 2-byte aligned");
    slm_status st;
    int n_split;
    if (a->T == 1) {
        n_split = attn_decode_splits(a->n_ctx);
        SLM_CU_REQUIRE(a->partial, "cuda attention: missing partial buffer");
        SLM_LAUNCH(attn_split_kernel, dim3((unsigned)a->n_head, (unsigned)n_split, 1u), ATT_THREADS, 0, s)
        (*a, n_split);
        st = slm_cu_launched("attention", err);
    } else {
        n_split = attn_tile_splits(a->head_dim, a->n_head, a->T, a->n_ctx);
        SLM_CU_REQUIRE(n_split == 1 || a->partial, "cuda attention: missing partial buffer");
        switch (attn_tile_rows(a->head_dim)) {
        case 64: st = attn_tile_launch<64, 64>(a, n_split, s, err); break;
        case 32: st = attn_tile_launch<32, 128>(a, n_split, s, err); break;
        default: st = attn_tile_launch<16, SLM_CUDA_ATTN_MAX_HEAD_DIM>(a, n_split, s, err); break;
        }
    }
    if (st || (a->T > 1 && n_split == 1)) return st;
    SLM_LAUNCH(attn_merge_kernel, dim3((unsigned)a->n_head, (unsigned)a->T), ATT_THREADS, 0, s)(*a, n_split);
    return slm_cu_launched("attention merge", err);
}
