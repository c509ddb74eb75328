/* Synthetic models of real shapes with random quantized weights (see synth.h and synth_gguf.h).
 *
 * The GGUF is written once by the GGUF writer with every tensor's data left as zeros, then the random blocks
 * are written in place into that buffer, so an 8B model costs its 4.9 GB once, not twice. Filling is split
 * into fixed chunks, each seeded from (seed, tensor, chunk), so the bytes do not depend on the thread count. */
#include "synth_gguf.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "gguf_write.h"

/* ---------------------------------------------------------------------------------------------------- */
/* Presets: the hyper-parameters of the published configs. */

typedef struct preset {
    const char *name, *model_name, *arch, *family;
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    float rope_freq_base, norm_eps, rope_llama3_factor;
    bool tied, qkv_bias, qk_norm;
} preset;

static const preset PRESETS[] = {
    /* Llama 3.2 1B: tied embeddings, rope scaling factor 32 */
    {"llama3-1b", "Llama 3.2 1B", "llama", "llama3", 16, 2048, 32, 8, 64, 8192, 128256, 131072, 500000.0f, 1e-5f, 32.0f,
     true, false},
    {"llama3-3b", "Llama 3.2 3B", "llama", "llama3", 28, 3072, 24, 8, 128, 8192, 128256, 131072, 500000.0f, 1e-5f,
     32.0f, true, false},
    {"llama3-8b", "Llama 3.1 8B", "llama", "llama3", 32, 4096, 32, 8, 128, 14336, 128256, 131072, 500000.0f, 1e-5f,
     8.0f, false, false},
    {"qwen2.5-14b", "Qwen2.5 14B", "qwen2", "qwen2", 48, 5120, 40, 8, 128, 13824, 152064, 32768, 1000000.0f, 1e-6f,
     0.0f, false, true},
    /* Qwen 3: per-head q/k norms and no biases; head_dim 128 whatever the width (0.6B's q has 2048 rows for
     * an n_embd of 1024); the small one ties its head to the embedding */
    {"qwen3-0.6b", "Qwen3 0.6B", "qwen3", "qwen2", 28, 1024, 16, 8, 128, 3072, 151936, 40960, 1000000.0f, 1e-6f, 0.0f,
     true, false, true},
    {"qwen3-8b", "Qwen3 8B", "qwen3", "qwen2", 36, 4096, 32, 8, 128, 12288, 151936, 40960, 1000000.0f, 1e-6f, 0.0f,
     false, false, true},
    {"qwen3-14b", "Qwen3 14B", "qwen3", "qwen2", 40, 5120, 40, 8, 128, 17408, 151936, 40960, 1000000.0f, 1e-6f, 0.0f,
     false, false, true},
    /* Phi-4: a phi3-architecture model, written as real Phi-4 files are: fused attn_qkv and gate/up (ffn_up)
     * tensors, plain rope (base 250000, no long-context factors), no sliding window, untied head */
    {"phi4-14b", "Phi-4 14B", "phi3", "phi4", 40, 5120, 40, 10, 128, 17920, 100352, 16384, 250000.0f, 1e-5f, 0.0f,
     false, false},
    /* Gemma 3 270M and 1B: per-head q/k norms, post-attention and post-feed-forward norms, GeGLU, one kv head
     * of 256, local sliding-window layers (512 positions) between global ones, tied head */
    {"gemma3-270m", "Gemma 3 270M", "gemma3", "gemma3", 18, 640, 4, 1, 256, 2048, 262144, 32768, 1000000.0f, 1e-6f,
     0.0f, true, false, true},
    {"gemma3-1b", "Gemma 3 1B", "gemma3", "gemma3", 26, 1152, 4, 1, 256, 6912, 262144, 32768, 1000000.0f, 1e-6f, 0.0f,
     true, false, true},
    /* A small llama shape for tests and quick runs; every dimension can be overridden */
    {"custom", "custom", "llama", "custom", 2, 256, 4, 2, 64, 512, 1024, 4096, 10000.0f, 1e-5f, 0.0f, false, false},
};
#define N_PRESETS (sizeof PRESETS / sizeof PRESETS[0])

static const char *const PRESET_NAMES[] = {"llama3-1b",   "llama3-3b", "llama3-8b", "qwen2.5-14b",
                                           "qwen3-0.6b",  "qwen3-8b",  "qwen3-14b", "phi4-14b",
                                           "gemma3-270m", "gemma3-1b", "custom",    NULL};

const char *const *slm_synth_preset_names(void) { return PRESET_NAMES; }

static const char *quant_name(slm_synth_quant q) {
    switch (q) {
    case SLM_SYNTH_Q4_0: return "q4_0";
    case SLM_SYNTH_Q4_K_M: return "q4_k_m";
    case SLM_SYNTH_Q8_0: return "q8_0";
    case SLM_SYNTH_F16: return "f16";
    }
    return "?";
}

static bool parse_int(const char *v, int lo, int hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) return false;
    *out = (int)x;
    return true;
}

slm_status slm_synth_parse(const char *spec, slm_synth_spec *out, slm_error *err) {
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return slm_fail(err, SLM_ERR_INVALID_ARG, "synthetic: empty spec");
    char buf[256];
    if (strlen(spec) >= sizeof buf) return slm_fail(err, SLM_ERR_INVALID_ARG, "synthetic: spec too long");
    strcpy(buf, spec);
    char *save = NULL;
    char *tok = strtok_r(buf, ":", &save);
    const preset *p = NULL;
    for (size_t i = 0; i < N_PRESETS && tok; i++)
        if (!strcmp(tok, PRESETS[i].name)) p = &PRESETS[i];
    if (!p)
        return slm_fail(
            err, SLM_ERR_INVALID_ARG,
            "synthetic: unknown model '%s' (llama3-1b, llama3-3b, llama3-8b, qwen2.5-14b, qwen3-0.6b, qwen3-8b, "
            "qwen3-14b, phi4-14b, custom)",
            tok ? tok : "");
    snprintf(out->model_name, sizeof out->model_name, "%s (synthetic)", p->model_name);
    snprintf(out->arch, sizeof out->arch, "%s", p->arch);
    snprintf(out->family, sizeof out->family, "%s", p->family);
    out->n_layer = p->n_layer;
    out->n_embd = p->n_embd;
    out->n_head = p->n_head;
    out->n_head_kv = p->n_head_kv;
    out->head_dim = p->head_dim;
    out->n_ff = p->n_ff;
    out->n_vocab = p->n_vocab;
    out->n_ctx = p->n_ctx;
    out->rope_freq_base = p->rope_freq_base;
    out->norm_eps = p->norm_eps;
    out->rope_llama3_factor = p->rope_llama3_factor;
    out->tied = p->tied;
    out->qkv_bias = p->qkv_bias;
    out->qk_norm = p->qk_norm;
    out->quant = SLM_SYNTH_Q4_K_M;
    out->seed = 1234;
    bool head_dim_set = false, embd_or_head_set = false;
    char overrides[160] = "";
    while ((tok = strtok_r(NULL, ":", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            if (!strcmp(tok, "q4_0")) out->quant = SLM_SYNTH_Q4_0;
            else if (!strcmp(tok, "q4_k_m") || !strcmp(tok, "q4_k")) out->quant = SLM_SYNTH_Q4_K_M;
            else if (!strcmp(tok, "q8_0")) out->quant = SLM_SYNTH_Q8_0;
            else if (!strcmp(tok, "f16")) out->quant = SLM_SYNTH_F16;
            else
                return slm_fail(err, SLM_ERR_INVALID_ARG,
                                "synthetic '%s': unknown quantization '%s' (q4_0, q4_k_m, q8_0, f16)", spec, tok);
            continue;
        }
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        int x = 0;
        bool ok = true;
        const int big = 1 << 20;
        if (!strcmp(k, "n_layer")) ok = parse_int(v, 1, 1000, &out->n_layer);
        else if (!strcmp(k, "n_embd")) {
            ok = parse_int(v, 1, big, &out->n_embd);
            embd_or_head_set = true;
        } else if (!strcmp(k, "n_head")) {
            ok = parse_int(v, 1, 4096, &out->n_head);
            embd_or_head_set = true;
        } else if (!strcmp(k, "n_head_kv")) ok = parse_int(v, 1, 4096, &out->n_head_kv);
        else if (!strcmp(k, "head_dim")) {
            ok = parse_int(v, 2, 4096, &out->head_dim);
            head_dim_set = true;
        } else if (!strcmp(k, "n_ff")) ok = parse_int(v, 1, 4 * big, &out->n_ff);
        else if (!strcmp(k, "n_vocab")) ok = parse_int(v, 1, 4 * big, &out->n_vocab);
        else if (!strcmp(k, "n_ctx")) ok = parse_int(v, 1, 16 * big, &out->n_ctx);
        else if (!strcmp(k, "tied")) {
            ok = parse_int(v, 0, 1, &x);
            out->tied = x;
        } else if (!strcmp(k, "seed")) {
            ok = parse_int(v, 0, 0x7fffffff, &x);
            out->seed = (uint64_t)x;
        } else if (!strcmp(k, "arch")) {
            if (!strcmp(v, "llama") || !strcmp(v, "qwen2") || !strcmp(v, "qwen3") || !strcmp(v, "gemma3")) {
                out->qkv_bias = !strcmp(v, "qwen2");
                out->qk_norm = !strcmp(v, "qwen3") || !strcmp(v, "gemma3");
            } else ok = false;
            if (ok) snprintf(out->arch, sizeof out->arch, "%s", v);
        } else
            return slm_fail(err, SLM_ERR_INVALID_ARG,
                            "synthetic '%s': unknown key '%s' (n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, "
                            "n_vocab, n_ctx, arch, tied, seed)",
                            spec, k);
        if (!ok) return slm_fail(err, SLM_ERR_INVALID_ARG, "synthetic '%s': bad value '%s' for %s", spec, v, k);
        size_t used = strlen(overrides);
        snprintf(overrides + used, sizeof overrides - used, ":%s=%s", k, v);
    }
    /* A changed width or head count keeps head_dim = n_embd / n_head unless head_dim itself was given. */
    if (embd_or_head_set && !head_dim_set && out->n_head > 0) out->head_dim = out->n_embd / out->n_head;
    snprintf(out->name, sizeof out->name, "%s:%s%s", p->name, quant_name(out->quant), overrides);
    return slm_synth_validate(out, err);
}

/* ---------------------------------------------------------------------------------------------------- */
/* The tensor list and the quantization mix */

typedef enum tkind { T_WEIGHT, T_NORM, T_BIAS, T_ROPE } tkind;

typedef struct tdesc {
    char name[48];
    slm_dtype type;
    int64_t ne0, ne1; /* ne1 = 1 for vectors */
    tkind kind;
} tdesc;

/* llama.cpp's Q4_K_M gives a third of the layers more bits: the first and last eighth and every third
 * layer between. */
static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* A k-quant needs rows that are multiples of 256; otherwise the nearest legacy type, as quantizers do. */
static slm_dtype fit(slm_dtype t, int64_t ne0) {
    if ((t == SLM_Q4_K || t == SLM_Q5_K || t == SLM_Q6_K) && ne0 % 256) return t == SLM_Q4_K ? SLM_Q4_0 : SLM_Q8_0;
    return t;
}

slm_dtype slm_synth_tensor_type(const slm_synth_spec *s, const char *name) {
    const char *dot = strrchr(name, '.');
    if (dot && !strcmp(dot, ".bias")) return SLM_F32;
    if (strstr(name, "_norm") || !strcmp(name, "rope_freqs.weight")) return SLM_F32;
    bool head = !strcmp(name, "output.weight") || (s->tied && !strcmp(name, "token_embd.weight"));
    switch (s->quant) {
    case SLM_SYNTH_F16: return SLM_F16;
    case SLM_SYNTH_Q8_0: return SLM_Q8_0;
    case SLM_SYNTH_Q4_0: return head ? SLM_Q6_K : SLM_Q4_0;
    case SLM_SYNTH_Q4_K_M:
        if (head) return SLM_Q6_K;
        /* the fused q/k/v of phi3 get one step more in every layer (what llama.cpp's Q4_K_M gives attn_qkv) */
        if (strstr(name, ".attn_qkv.")) return SLM_Q5_K;
        int il = -1;
        if (sscanf(name, "blk.%d.", &il) == 1 && (strstr(name, "attn_v.") || strstr(name, "ffn_down.")) &&
            more_bits(il, s->n_layer))
            return SLM_Q6_K;
        return SLM_Q4_K;
    }
    return SLM_F32;
}

static void add_desc(const slm_synth_spec *s, tdesc *d, int *n, const char *name, int64_t ne0, int64_t ne1,
                     tkind kind) {
    tdesc *t = &d[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ne0 = ne0;
    t->ne1 = ne1;
    t->kind = kind;
    t->type = kind == T_WEIGHT ? fit(slm_synth_tensor_type(s, name), ne0) : SLM_F32;
}

/* Every tensor of the model in file order; d has room for 14 * n_layer + 8. */
static int list_tensors(const slm_synth_spec *s, tdesc *d) {
    int n = 0;
    int64_t E = s->n_embd, Q = (int64_t)s->n_head * s->head_dim, KV = (int64_t)s->n_head_kv * s->head_dim;
    bool phi3 = !strcmp(s->arch, "phi3");
    add_desc(s, d, &n, "token_embd.weight", E, s->n_vocab, T_WEIGHT);
    if (s->rope_llama3_factor > 0) add_desc(s, d, &n, "rope_freqs.weight", s->head_dim / 2, 1, T_ROPE);
    char nm[48];
    for (int il = 0; il < s->n_layer; il++) {
#define ADD(suffix, a, b, kind)                                                                                        \
    snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix);                                                                  \
    add_desc(s, d, &n, nm, a, b, kind);
        ADD("attn_norm.weight", E, 1, T_NORM);
        if (phi3) {
            ADD("attn_qkv.weight", E, Q + 2 * KV, T_WEIGHT); /* rows: q, then k, then v */
        } else {
            ADD("attn_q.weight", E, Q, T_WEIGHT);
            ADD("attn_k.weight", E, KV, T_WEIGHT);
            ADD("attn_v.weight", E, KV, T_WEIGHT);
        }
        if (s->qkv_bias) {
            ADD("attn_q.bias", Q, 1, T_BIAS);
            ADD("attn_k.bias", KV, 1, T_BIAS);
            ADD("attn_v.bias", KV, 1, T_BIAS);
        }
        if (s->qk_norm) {
            ADD("attn_q_norm.weight", s->head_dim, 1, T_NORM);
            ADD("attn_k_norm.weight", s->head_dim, 1, T_NORM);
        }
        ADD("attn_output.weight", Q, E, T_WEIGHT);
        ADD("ffn_norm.weight", E, 1, T_NORM);
        if (phi3) {
            ADD("ffn_up.weight", E, 2 * (int64_t)s->n_ff, T_WEIGHT); /* rows: gate, then up */
        } else {
            ADD("ffn_gate.weight", E, s->n_ff, T_WEIGHT);
            ADD("ffn_up.weight", E, s->n_ff, T_WEIGHT);
        }
        ADD("ffn_down.weight", s->n_ff, E, T_WEIGHT);
        if (!strcmp(s->arch, "gemma3")) {
            ADD("post_attention_norm.weight", E, 1, T_NORM);
            ADD("post_ffw_norm.weight", E, 1, T_NORM);
        }
#undef ADD
    }
    add_desc(s, d, &n, "output_norm.weight", E, 1, T_NORM);
    if (!s->tied) add_desc(s, d, &n, "output.weight", E, s->n_vocab, T_WEIGHT);
    return n;
}

/* Tokens the tokenizer needs: 256 bytes, the merges, and the family's special tokens. */
#define N_MERGES 40
static int special_base(const slm_synth_spec *s) {
    if (!strcmp(s->family, "llama3")) return 128000;
    if (!strcmp(s->family, "qwen2")) return 151643;
    if (!strcmp(s->family, "phi4")) return 100257;
    return s->n_vocab - 8;
}

slm_status slm_synth_validate(const slm_synth_spec *s, slm_error *err) {
    const char *nm = s->name[0] ? s->name : "synthetic";
    if (s->n_layer < 1 || s->n_embd < 1 || s->n_head < 1 || s->n_head_kv < 1 || s->n_ff < 1 || s->head_dim < 2)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "%s: dimensions must be positive", nm);
    if (s->n_head % s->n_head_kv)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "%s: n_head %d is not a multiple of n_head_kv %d", nm, s->n_head,
                        s->n_head_kv);
    if (s->head_dim % 2) return slm_fail(err, SLM_ERR_INVALID_ARG, "%s: head_dim %d is odd", nm, s->head_dim);
    /* every row length (n_embd, n_ff, n_head * head_dim) must fill whole blocks of the smallest block size */
    int blk = s->quant == SLM_SYNTH_F16 ? 1 : 32;
    int64_t rows[] = {s->n_embd, s->n_ff, (int64_t)s->n_head * s->head_dim};
    for (int i = 0; i < 3; i++)
        if (rows[i] % blk)
            return slm_fail(err, SLM_ERR_INVALID_ARG,
                            "%s: row length %lld (n_embd, n_ff, n_head*head_dim) is not a multiple of %d", nm,
                            (long long)rows[i], blk);
    if (s->n_embd % 256 && (s->quant == SLM_SYNTH_Q4_0 || s->quant == SLM_SYNTH_Q4_K_M))
        return slm_fail(err, SLM_ERR_INVALID_ARG, "%s: n_embd %d must be a multiple of 256 for the Q6_K output", nm,
                        s->n_embd);
    if (special_base(s) < 256 + N_MERGES || special_base(s) + 8 > s->n_vocab)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "%s: n_vocab %d is too small for this family's tokenizer", nm,
                        s->n_vocab);
    return SLM_OK;
}

uint64_t slm_synth_param_count(const slm_synth_spec *s) {
    tdesc *d = malloc(((size_t)s->n_layer * 14 + 8) * sizeof *d);
    if (!d) return 0;
    int n = list_tensors(s, d);
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        if (d[i].kind != T_ROPE) total += (uint64_t)(d[i].ne0 * d[i].ne1);
    free(d);
    return total;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Random blocks */

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rand_bytes(uint64_t *st, uint8_t *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t r = splitmix(st);
        memcpy(p + i, &r, 8);
    }
    if (i < n) {
        uint64_t r = splitmix(st);
        memcpy(p + i, &r, n - i);
    }
}

/* uniform in [lo, hi) */
static float rand_range(uint64_t *st, float lo, float hi) {
    return lo + (hi - lo) * (float)((splitmix(st) >> 40) * (1.0 / 16777216.0));
}

static void put_f16(uint8_t *p, float f) {
    uint16_t h = slm_f32_to_f16(f);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* A Q4_K / Q5_K super-block: random codes (code_bytes after the 16 header bytes): d around d_mean, dmin =
 * mid * d, and eight 6-bit scales 24..39 (mean ~32) that double as the mins, so the block's mean is zero. */
static void kquant_block(uint64_t *st, uint8_t *p, float d_mean, float mid, size_t code_bytes) {
    float d = d_mean * rand_range(st, 0.75f, 1.25f);
    put_f16(p, d);
    put_f16(p + 2, mid * d);
    uint8_t sc[8];
    uint64_t r = splitmix(st);
    for (int j = 0; j < 8; j++) sc[j] = (uint8_t)(24 + ((r >> (8 * j)) & 15));
    uint8_t *q = p + 4;
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6)); /* mins = scales */
        q[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((sc[j + 4] & 15) << 4));
    }
    rand_bytes(st, p + 16, code_bytes);
}

/* Standard deviations of uniformly random codes: 4 bits (q - 8 or q - 7.5), 6 bits (q - 32), int8. */
#define SD_Q4 4.61f
#define SD_Q5 9.23f
#define SD_Q6 18.47f
#define SD_Q8 73.9f

/* nblocks blocks of type t at p. Each block scale is jittered by +-25% so the rows are not all alike. */
static void fill_blocks(slm_dtype t, uint8_t *p, size_t nblocks, float sigma, uint64_t *st) {
    switch (t) {
    case SLM_Q4_0:
        /* codes q - 8 with q uniform in 0..15 lean negative (mean -0.5); turning every 0 nibble into 8 (the
         * code of 0.0) makes them symmetric, as real weights are */
        for (size_t b = 0; b < nblocks; b++, p += 18) {
            put_f16(p, sigma / SD_Q4 * rand_range(st, 0.75f, 1.25f));
            for (int h = 0; h < 2; h++) {
                uint64_t w = splitmix(st), nw = ~w;
                uint64_t zero = nw & (nw >> 1) & (nw >> 2) & (nw >> 3) & 0x1111111111111111ull;
                w |= zero << 3;
                memcpy(p + 2 + 8 * h, &w, 8);
            }
        }
        break;
    case SLM_Q8_0:
        for (size_t b = 0; b < nblocks; b++, p += 34) {
            put_f16(p, sigma / SD_Q8 * rand_range(st, 0.75f, 1.25f));
            rand_bytes(st, p + 2, 32);
        }
        break;
    case SLM_Q4_K:
        /* x = d*sc*q - dmin*mn with mn = sc and dmin = 7.5 d gives d*sc*(q - 7.5): zero mean for any sc */
        for (size_t b = 0; b < nblocks; b++, p += 144) kquant_block(st, p, sigma / (SD_Q4 * 32.0f), 7.5f, 128);
        break;
    case SLM_Q5_K:
        /* as Q4_K with 5-bit codes: dmin = 15.5 d gives d*sc*(q - 15.5); codes qh[32], qs[128] */
        for (size_t b = 0; b < nblocks; b++, p += 176) kquant_block(st, p, sigma / (SD_Q5 * 32.0f), 15.5f, 160);
        break;
    case SLM_Q6_K:
        for (size_t b = 0; b < nblocks; b++, p += 210) {
            rand_bytes(st, p, 192); /* ql, qh */
            uint64_t r = splitmix(st);
            for (int j = 0; j < 16; j++) p[192 + j] = (uint8_t)(6 + ((r >> (4 * j)) & 15) % 6);
            /* scales 6..11, mean ~8.5 */
            put_f16(p + 208, sigma / (SD_Q6 * 8.5f) * rand_range(st, 0.75f, 1.25f));
        }
        break;
    case SLM_F16:
        for (size_t b = 0; b < nblocks; b++, p += 2) put_f16(p, rand_range(st, -1.732f, 1.732f) * sigma);
        break;
    case SLM_F32:
        for (size_t b = 0; b < nblocks; b++, p += 4) {
            float v = rand_range(st, -1.732f, 1.732f) * sigma;
            memcpy(p, &v, 4);
        }
        break;
    default: break;
    }
}

slm_status slm_synth_fill(slm_dtype t, void *data, size_t nbytes, float sigma, uint64_t seed, slm_error *err) {
    if (t != SLM_Q4_0 && t != SLM_Q8_0 && t != SLM_Q4_K && t != SLM_Q5_K && t != SLM_Q6_K && t != SLM_F16 &&
        t != SLM_F32)
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "synthetic: cannot fill type %s", slm_dtype_name(t));
    const slm_dtype_info *ti = slm_dtype_get(t);
    if (nbytes % (size_t)ti->block_bytes)
        return slm_fail(err, SLM_ERR_INVALID_ARG, "synthetic: %zu bytes is not a whole number of %s blocks", nbytes,
                        ti->name);
    uint64_t st = seed;
    fill_blocks(t, data, nbytes / (size_t)ti->block_bytes, sigma, &st);
    return SLM_OK;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Tokenizer metadata: a byte-level BPE ("gpt2") vocabulary of the real size. Ids 0..255 are the 256 bytes
 * (in GPT-2's byte-to-unicode spelling), then a few merges of common English pairs, then "<tok_N>" fillers,
 * and the family's special tokens at their real ids (e.g. <|begin_of_text|> = 128000). */

static int utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2; /* the byte map never goes past U+07FF */
}

/* GPT-2's byte-to-unicode: printable Latin-1 bytes are themselves, the others U+0100 upwards in order. */
static void byte_text(int b, char *o) {
    int n = 0;
    uint32_t cp = 0;
    for (int x = 0; x < 256; x++) {
        bool keep = (x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || x >= 0xae;
        uint32_t c = keep ? (uint32_t)x : 256u + (uint32_t)n++;
        if (x == b) {
            cp = c;
            break;
        }
    }
    o[utf8_put(cp, o)] = 0;
}

/* pairs (left, right) of texts already in the vocabulary; "Ġ" is U+0120, the byte-level space */
static const char *const MERGES[N_MERGES][2] = {
    {"\xc4\xa0", "t"},
    {"\xc4\xa0", "a"},
    {"h", "e"},
    {"i", "n"},
    {"r", "e"},
    {"o", "n"},
    {"\xc4\xa0"
     "t",
     "he"},
    {"e", "r"},
    {"\xc4\xa0", "s"},
    {"a", "t"},
    {"e", "n"},
    {"\xc4\xa0", "w"},
    {"o", "r"},
    {"i", "s"},
    {"\xc4\xa0", "o"},
    {"\xc4\xa0", "c"},
    {"e", "s"},
    {"i", "t"},
    {"\xc4\xa0", "b"},
    {"a", "n"},
    {"\xc4\xa0", "f"},
    {"\xc4\xa0", "m"},
    {"\xc4\xa0", "p"},
    {"\xc4\xa0", "d"},
    {"a", "r"},
    {"o", "u"},
    {"\xc4\xa0", "h"},
    {"l", "l"},
    {"\xc4\xa0", "i"},
    {"\xc4\xa0", "in"},
    {"in", "g"},
    {"e", "d"},
    {"\xc4\xa0"
     "t",
     "o"},
    {"\xc4\xa0"
     "a",
     "n"},
    {"\xc4\xa0"
     "an",
     "d"},
    {"\xc4\xa0"
     "o",
     "f"},
    {"l", "e"},
    {"\xc4\xa0", "l"},
    {"\xc4\xa0", "n"},
    {"a", "l"},
};

typedef struct special {
    int off;
    const char *text;
} special;

static void special_text(const slm_synth_spec *s, int id, char *o, size_t n) {
    static const special LLAMA3[] = {{0, "<|begin_of_text|>"},
                                     {1, "<|end_of_text|>"},
                                     {6, "<|start_header_id|>"},
                                     {7, "<|end_header_id|>"},
                                     {8, "<|eom_id|>"},
                                     {9, "<|eot_id|>"},
                                     {-1, NULL}};
    static const special QWEN2[] = {{0, "<|endoftext|>"}, {1, "<|im_start|>"}, {2, "<|im_end|>"}, {-1, NULL}};
    static const special PHI4[] = {
        {0, "<|endoftext|>"}, {7, "<|im_start|>"}, {8, "<|im_end|>"}, {9, "<|im_sep|>"}, {-1, NULL}};
    static const special CUSTOM[] = {{0, "<|begin_of_text|>"}, {1, "<|eot_id|>"}, {-1, NULL}};
    const special *t = !strcmp(s->family, "llama3") ? LLAMA3
        : !strcmp(s->family, "qwen2")               ? QWEN2
        : !strcmp(s->family, "phi4")                ? PHI4
                                                    : CUSTOM;
    int off = id - special_base(s);
    for (; t->text; t++)
        if (t->off == off) {
            snprintf(o, n, "%s", t->text);
            return;
        }
    snprintf(o, n, "<|reserved_special_token_%d|>", off);
}

static slm_status add_tokenizer(const slm_synth_spec *s, slm_gguf_writer *w, slm_error *err) {
    int n = s->n_vocab, base = special_base(s);
    char *pool = malloc((size_t)n * 40);
    const char **texts = malloc((size_t)n * sizeof *texts);
    int32_t *types = malloc((size_t)n * sizeof *types);
    const char **merges = malloc(N_MERGES * sizeof *merges);
    char *mpool = malloc(N_MERGES * 32);
    slm_status st = SLM_OK;
    if (!pool || !texts || !types || !merges || !mpool) {
        st = slm_fail(err, SLM_ERR_NOMEM, "synthetic: out of memory for a vocabulary of %d tokens", n);
        goto done;
    }
    char *at = pool;
    for (int i = 0; i < n; i++) {
        texts[i] = at;
        types[i] = 1; /* normal */
        if (i < 256) byte_text(i, at);
        else if (i < 256 + N_MERGES) snprintf(at, 40, "%s%s", MERGES[i - 256][0], MERGES[i - 256][1]);
        else if (i < base) snprintf(at, 40, "<tok_%d>", i);
        else {
            special_text(s, i, at, 40);
            types[i] = 3; /* control */
        }
        at += strlen(at) + 1;
    }
    for (int i = 0; i < N_MERGES; i++) {
        merges[i] = mpool + 32 * i;
        snprintf(mpool + 32 * i, 32, "%s %s", MERGES[i][0], MERGES[i][1]);
    }
    bool llama3 = !strcmp(s->family, "llama3"), qwen = !strcmp(s->family, "qwen2");
    uint32_t bos = (uint32_t)base, eos = (uint32_t)base + (llama3 ? 9 : qwen ? 2 : !strcmp(s->family, "phi4") ? 8 : 1);
    slm_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    slm_gguf_writer_add_str(w, "tokenizer.ggml.pre", llama3 ? "llama-bpe" : qwen ? "qwen2" : "default");
    slm_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", texts, (uint64_t)n);
    slm_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    slm_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, N_MERGES);
    slm_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", bos);
    slm_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", eos);
    slm_gguf_writer_add_u32(w, "tokenizer.ggml.eot_token_id", eos);
    st = slm_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", llama3 || !strcmp(s->family, "custom"));
    if (st) st = slm_fail(err, st, "synthetic: cannot add the tokenizer metadata");
done:
    free(pool);
    free(texts);
    free(types);
    free(merges);
    free(mpool);
    return st;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Building */

/* Llama 3 rope scaling as per-frequency divisors (rope_freqs.weight): long wavelengths are slowed by the
 * factor, short ones kept, and a smooth ramp between (original context 8192, low/high frequency factors 1
 * and 4, the published rope_scaling of Llama 3.1 and 3.2). */
static void llama3_rope_freqs(const slm_synth_spec *s, float *out) {
    const double old_ctx = 8192, lo_f = 1, hi_f = 4, factor = s->rope_llama3_factor;
    const double lo_wl = old_ctx / lo_f, hi_wl = old_ctx / hi_f;
    for (int i = 0; i < s->head_dim / 2; i++) {
        double freq = pow(s->rope_freq_base, -2.0 * i / s->head_dim);
        double wl = 2 * M_PI / freq;
        if (wl < hi_wl) out[i] = 1.0f;
        else if (wl > lo_wl) out[i] = (float)factor;
        else {
            double smooth = (old_ctx / wl - lo_f) / (hi_f - lo_f);
            out[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

#define CHUNK_BLOCKS 4096

typedef struct fill_job {
    uint8_t *base; /* the GGUF buffer */
    const slm_gguf *g;
    const tdesc *d;
    int n;
    uint64_t seed;
    const uint64_t *first_chunk; /* [n + 1]: prefix sums of chunks per tensor */
    uint8_t *const *ptr;         /* [n] each tensor's data in the buffer */
    const uint64_t *nblocks;     /* [n] */
    atomic_uint_fast64_t next;
} fill_job;

static void *fill_worker(void *arg) {
    fill_job *j = arg;
    uint64_t total = j->first_chunk[j->n];
    int ti = 0;
    for (;;) {
        uint64_t c = atomic_fetch_add(&j->next, 1);
        if (c >= total) break;
        while (j->first_chunk[ti + 1] <= c) ti++;
        const tdesc *d = &j->d[ti];
        uint8_t *data = j->ptr[ti];
        const slm_dtype_info *info = slm_dtype_get(d->type);
        uint64_t nblocks = j->nblocks[ti];
        uint64_t k = c - j->first_chunk[ti], b0 = k * CHUNK_BLOCKS;
        uint64_t nb = nblocks - b0 < CHUNK_BLOCKS ? nblocks - b0 : CHUNK_BLOCKS;
        uint64_t st = j->seed ^ ((uint64_t)ti << 40) ^ (k * 0x9e3779b97f4a7c15ull);
        splitmix(&st);
        if (d->kind == T_NORM) {
            for (uint64_t i = 0; i < nb; i++) {
                float one = 1.0f;
                memcpy(data + (b0 + i) * 4, &one, 4);
            }
        } else {
            /* weights ~0.02 like trained ones; biases the same order */
            fill_blocks(d->type, data + b0 * (uint64_t)info->block_bytes, (size_t)nb, 0.02f, &st);
        }
    }
    return NULL;
}

static bool listed(const char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return true;
    return false;
}

static slm_status fill_all(const slm_synth_spec *s, const slm_synth_edits *e, uint8_t *buf, const slm_gguf *g,
                           const tdesc *d, int n, int n_threads, slm_error *err) {
    uint64_t *first = malloc(((size_t)n + 1) * sizeof *first);
    uint64_t *nblocks = malloc(((size_t)n + 1) * sizeof *nblocks);
    uint8_t **ptr = malloc(((size_t)n + 1) * sizeof *ptr);
    if (!first || !nblocks || !ptr) {
        free(first);
        free(nblocks);
        free(ptr);
        return slm_fail(err, SLM_ERR_NOMEM, "synthetic: out of memory");
    }
    first[0] = 0;
    for (int i = 0; i < n; i++) {
        const slm_gguf_tensor *gt = slm_gguf_find_tensor(g, d[i].name);
        if (!gt && e && listed(e->drop_tensors, e->n_drop_tensors, d[i].name)) {
            ptr[i] = NULL;
            nblocks[i] = 0; /* left out on purpose (slm_synth_build_edited): nothing to fill */
            first[i + 1] = first[i];
            continue;
        }
        if (!gt || gt->type != d[i].type) {
            free(first);
            free(nblocks);
            free(ptr);
            return slm_fail(err, SLM_ERR_FORMAT, "synthetic: tensor %s did not come back from the writer", d[i].name);
        }
        uint64_t chunks = 0;
        ptr[i] = buf + ((const uint8_t *)gt->data - g->base);
        nblocks[i] = gt->size / (uint64_t)slm_dtype_get(d[i].type)->block_bytes;
        if (d[i].kind == T_ROPE) llama3_rope_freqs(s, (float *)ptr[i]);
        else chunks = (nblocks[i] + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS;
        first[i + 1] = first[i] + chunks;
    }
    fill_job job = {.base = buf,
                    .g = g,
                    .d = d,
                    .n = n,
                    .seed = s->seed * 0x2545f4914f6cdd1dull + 1,
                    .first_chunk = first,
                    .ptr = ptr,
                    .nblocks = nblocks};
    atomic_init(&job.next, 0);
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    pthread_t th[64];
    int started = 0;
    for (int i = 1; i < n_threads; i++)
        if (!pthread_create(&th[started], NULL, fill_worker, &job)) started++;
    fill_worker(&job);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    free(first);
    free(nblocks);
    free(ptr);
    return SLM_OK;
}

static slm_status add_metadata(const slm_synth_spec *s, slm_gguf_writer *w) {
    char k[96];
    const char *a = s->arch;
    slm_gguf_writer_add_str(w, "general.architecture", a);
    slm_gguf_writer_add_str(w, "general.name", s->model_name);
    /* llama.cpp's file type ids: 1 f16, 2 q4_0, 7 q8_0, 15 q4_k_m */
    uint32_t ft = s->quant == SLM_SYNTH_F16 ? 1 : s->quant == SLM_SYNTH_Q4_0 ? 2 : s->quant == SLM_SYNTH_Q8_0 ? 7 : 15;
    slm_gguf_writer_add_u32(w, "general.file_type", ft);
    slm_gguf_writer_add_u32(w, "general.quantization_version", 2);
#define U32(suffix, v)                                                                                                 \
    snprintf(k, sizeof k, "%s.%s", a, suffix);                                                                         \
    slm_gguf_writer_add_u32(w, k, (uint32_t)(v));
#define F32(suffix, v)                                                                                                 \
    snprintf(k, sizeof k, "%s.%s", a, suffix);                                                                         \
    slm_gguf_writer_add_f32(w, k, v);
    U32("block_count", s->n_layer);
    U32("context_length", s->n_ctx);
    U32("embedding_length", s->n_embd);
    U32("feed_forward_length", s->n_ff);
    U32("attention.head_count", s->n_head);
    U32("attention.head_count_kv", s->n_head_kv);
    U32("attention.key_length", s->head_dim);
    U32("attention.value_length", s->head_dim);
    U32("rope.dimension_count", s->head_dim);
    U32("vocab_size", s->n_vocab);
    if (!strcmp(a, "phi3")) {
        /* as Phi-4's converted files say: no window (0), trained for its whole context */
        U32("attention.sliding_window", 0);
        U32("rope.scaling.original_context_length", s->n_ctx);
    }
    if (!strcmp(a, "gemma3")) {
        U32("attention.sliding_window", 512); /* every sixth layer global (arch.c) */
    }
    F32("attention.layer_norm_rms_epsilon", s->norm_eps);
    F32("rope.freq_base", s->rope_freq_base);
#undef U32
#undef F32
    return slm_gguf_writer_add_str(w, "general.source", "slm synthetic model (random weights)");
}

/* The edits' own values of the keys they name (dropped keys get none). */
static slm_status add_edited_keys(const slm_synth_edits *e, slm_gguf_writer *w) {
    slm_status st = SLM_OK;
    for (int i = 0; i < e->n_kvs && !st; i++) {
        const slm_synth_kv *kv = &e->kvs[i];
        if (kv->drop) continue;
        switch (kv->type) {
        case SLM_GGUF_STRING: st = slm_gguf_writer_add_str(w, kv->key, kv->str ? kv->str : ""); break;
        case SLM_GGUF_FLOAT32: st = slm_gguf_writer_add_f32(w, kv->key, (float)kv->num); break;
        case SLM_GGUF_FLOAT64: {
            double v = kv->num;
            st = slm_gguf_writer_add_scalar(w, kv->key, SLM_GGUF_FLOAT64, &v);
            break;
        }
        case SLM_GGUF_INT32: st = slm_gguf_writer_add_i32(w, kv->key, (int32_t)kv->num); break;
        case SLM_GGUF_UINT64: st = slm_gguf_writer_add_u64(w, kv->key, (uint64_t)kv->num); break;
        case SLM_GGUF_BOOL: st = slm_gguf_writer_add_bool(w, kv->key, kv->num != 0); break;
        default: st = slm_gguf_writer_add_u32(w, kv->key, (uint32_t)kv->num); break;
        }
    }
    return st;
}

static slm_status build(const slm_synth_spec *s, const slm_synth_edits *e, int n_threads, void **data, size_t *size,
                        slm_gguf **keep, slm_error *err) {
    *data = NULL;
    *size = 0;
    slm_status st = slm_synth_validate(s, err);
    if (st) return st;
    tdesc *d = malloc(((size_t)s->n_layer * 14 + 8) * sizeof *d);
    if (!d) return slm_fail(err, SLM_ERR_NOMEM, "synthetic: out of memory");
    int n = list_tensors(s, d);
    slm_gguf_writer *w = NULL;
    slm_gguf *g = NULL;
    void *buf = NULL;
    size_t len = 0;
    const char **skip = NULL;
    if ((st = slm_gguf_writer_create(&w, err))) goto done;
    if (e) {
        skip = malloc(((size_t)e->n_kvs + 1) * sizeof *skip);
        if (!skip) {
            st = slm_fail(err, SLM_ERR_NOMEM, "synthetic: out of memory");
            goto done;
        }
        for (int i = 0; i < e->n_kvs; i++) skip[i] = e->kvs[i].key;
        slm_gguf_writer_skip(w, skip, (size_t)e->n_kvs, e->drop_tensors, (size_t)e->n_drop_tensors);
    }
    add_metadata(s, w);
    if ((st = add_tokenizer(s, w, err))) goto done;
    for (int i = 0; i < n; i++) {
        int64_t ne[2] = {d[i].ne0, d[i].ne1};
        slm_gguf_writer_add_tensor(w, d[i].name, d[i].type, d[i].ne1 > 1 ? 2 : 1, ne, NULL, 0);
    }
    if (e) {
        slm_gguf_writer_skip(w, NULL, 0, NULL, 0);
        add_edited_keys(e, w); /* a failure stays in the writer and comes back from the write */
    }
    /* every tensor is written as zeros here, then filled in place */
    if ((st = slm_gguf_writer_write_memory(w, &buf, &len, err))) goto done;
    slm_gguf_writer_free(w);
    w = NULL;
    if ((st = slm_gguf_open_memory(buf, len, &g, err))) goto done;
    if ((st = fill_all(s, e, buf, g, d, n, n_threads, err))) goto done;
done:
    slm_gguf_writer_free(w);
    free(skip);
    free(d);
    if (st || !keep) {
        if (g) slm_gguf_close(g);
        g = NULL;
    }
    if (st) {
        free(buf);
        return st;
    }
    if (keep) *keep = g;
    *data = buf;
    *size = len;
    return SLM_OK;
}

slm_status slm_synth_build(const slm_synth_spec *s, int n_threads, void **data, size_t *size, slm_error *err) {
    return build(s, NULL, n_threads, data, size, NULL, err);
}

slm_status slm_synth_build_edited(const slm_synth_spec *s, const slm_synth_edits *e, int n_threads, void **data,
                                  size_t *size, slm_error *err) {
    return build(s, e, n_threads, data, size, NULL, err);
}

slm_status slm_synth_open(const slm_synth_spec *s, int n_threads, slm_gguf **g, void **data, slm_error *err) {
    size_t size;
    *g = NULL;
    return build(s, NULL, n_threads, data, &size, g, err);
}

slm_status slm_synth_write_file(const slm_synth_spec *s, int n_threads, const char *path, slm_error *err) {
    void *buf;
    size_t len;
    slm_status st = slm_synth_build(s, n_threads, &buf, &len, err);
    if (st) return st;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return slm_fail(err, SLM_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    }
    /* the reason of the first failure: fclose may fail again, or succeed, and change errno */
    errno = 0;
    size_t wr = fwrite(buf, 1, len, f);
    int e = wr != len ? errno : 0;
    errno = 0;
    if (fclose(f) != 0 && !e) e = errno ? errno : EIO;
    free(buf);
    if (wr != len || e) return slm_fail(err, SLM_ERR_IO, "writing %s: %s", path, strerror(e ? e : EIO));
    return SLM_OK;
}
