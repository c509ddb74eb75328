/* Synthetic models: preset shapes against the published parameter counts, the quantization mix, the random
 * blocks (finite, ~0.02 spread), determinism, and a small model loaded and run through the normal path. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_write.h"
#include "model.h"
#include "quant_ref.h"
#include "slm.h"
#include "synth_gguf.h"
#include "test_util.h"

static slm_synth_spec parse_ok(const char *spec) {
    slm_synth_spec s;
    slm_error err = {{0}};
    slm_status st = slm_synth_parse(spec, &s, &err);
    CHECK(st == SLM_OK, "parse %s: %s", spec, err.msg);
    return s;
}

static void test_param_counts(void) {
    /* Hand counts from the published configs (embeddings + per layer q, k, v, o, gate, up, down, 2 norms
     * (+ qkv biases) + final norm (+ untied output)):
     *   Llama 3.2 1B: 128256*2048 + 16*(2*2048*2048 + 2*2048*512 + 3*2048*8192 + 2*2048) + 2048 = 1235814400
     *   Llama 3.2 3B: 128256*3072 + 28*(2*3072^2 + 2*3072*1024 + 3*3072*8192 + 2*3072) + 3072 = 3212749824
     *   Llama 3.1 8B: 2*128256*4096 + 32*(2*4096^2 + 2*4096*1024 + 3*4096*14336 + 2*4096) + 4096 = 8030261248
     *   Qwen2.5 14B:  2*152064*5120 + 48*(2*5120^2 + 2*5120*1024 + 3*5120*13824 + 2*5120 + 5120 + 2*1024)
     *                 + 5120 = 14770033664
     *   Phi-4:        2*100352*5120 + 40*(2*5120^2 + 2*5120*1280 + 3*5120*17920 + 2*5120) + 5120 = 14659507200
     *   Qwen3 (q is n_head*128 rows, + 2*128 per-head norms per layer):
     *   Qwen3 0.6B:   151936*1024 + 28*(2*1024*2048 + 2*1024*1024 + 3*1024*3072 + 2*1024 + 256) + 1024 = 596049920
     *   Qwen3 8B:     2*151936*4096 + 36*(2*4096^2 + 2*4096*1024 + 3*4096*12288 + 2*4096 + 256) + 4096 = 8190735360
     *   Qwen3 14B:    2*151936*5120 + 40*(2*5120^2 + 2*5120*1024 + 3*5120*17408 + 2*5120 + 256) + 5120
     *                 = 14768307200
     * (the model cards say 1.24B, 3.21B, 8.03B, 14.7B, 14.7B, 0.6B (0.44B without embeddings), 8.2B and 14.8B) */
    struct {
        const char *spec;
        uint64_t want;
        double card;
    } cases[] = {
        {"llama3-1b:q4_0", 1235814400ull, 1.24e9},
        {"llama3-3b:q4_k_m", 3212749824ull, 3.21e9},
        {"llama3-8b:q4_k_m", 8030261248ull, 8.03e9},
        {"qwen2.5-14b:q4_k_m", 14770033664ull, 14.77e9},
        {"phi4-14b:q4_k_m", 14659507200ull, 14.66e9},
        {"qwen3-0.6b:q4_k_m", 596049920ull, 0.596e9},
        {"qwen3-8b:q4_k_m", 8190735360ull, 8.19e9},
        {"qwen3-14b:q4_k_m", 14768307200ull, 14.77e9},
        /* Gemma 3 270M: 262144*640 + 18*(640*1024*2 + 640*256*2 + 3*640*2048 + 4*640 + 2*256) + 640;
         * 1B: 262144*1152 + 26*(1152*1024*2 + 1152*256*2 + 3*1152*6912 + 4*1152 + 2*256) + 1152 (cards: 268M,
         * 1B). Q8_0: their widths are no multiple of the K-quants' 256, as the real files' Q8_0 tables show */
        {"gemma3-270m:q8_0", 268098176ull, 0.268e9},
        {"gemma3-1b:q8_0", 999885952ull, 1.0e9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        slm_synth_spec s = parse_ok(cases[i].spec);
        uint64_t n = slm_synth_param_count(&s);
        CHECK(n == cases[i].want, "%s: %llu parameters, want %llu", cases[i].spec, (unsigned long long)n,
              (unsigned long long)cases[i].want);
        CHECK(fabs((double)n / cases[i].card - 1) < 0.005, "%s: %llu is not the card's %.2fB", cases[i].spec,
              (unsigned long long)n, cases[i].card / 1e9);
    }
    slm_synth_spec s = parse_ok("qwen2.5-14b:q4_k_m");
    CHECK(!strcmp(s.arch, "qwen2") && s.qkv_bias && !s.tied && s.n_head_kv == 8 && s.n_vocab == 152064, "qwen2 preset");
    s = parse_ok("qwen3-0.6b");
    CHECK(!strcmp(s.arch, "qwen3") && s.qk_norm && !s.qkv_bias && s.tied && s.head_dim == 128 &&
              s.n_head * s.head_dim == 2 * s.n_embd,
          "qwen3 0.6b preset: q wider than the residual");
    s = parse_ok("qwen3-14b");
    CHECK(s.qk_norm && !s.tied && s.n_ff == 17408 && s.rope_freq_base == 1e6f, "qwen3 14b preset");
    s = parse_ok("phi4-14b");
    CHECK(!strcmp(s.arch, "phi3") && s.n_head_kv == 10 && s.n_ff == 17920 && s.quant == SLM_SYNTH_Q4_K_M && !s.tied &&
              !s.qkv_bias && s.rope_freq_base == 250000.0f && s.rope_llama3_factor == 0,
          "phi4 is a phi3-architecture model with plain rope");
    /* llama.cpp's Q4_K_M mix as real Phi-4 files have it: Q5_K attn_qkv, Q6_K head, Q4_K ffn_up (gate+up) */
    CHECK(slm_synth_tensor_type(&s, "blk.9.attn_qkv.weight") == SLM_Q5_K, "phi4 attn_qkv");
    CHECK(slm_synth_tensor_type(&s, "blk.9.ffn_up.weight") == SLM_Q4_K, "phi4 ffn_up");
    CHECK(slm_synth_tensor_type(&s, "blk.7.ffn_down.weight") == SLM_Q6_K, "phi4 ffn_down of layer 7");
}

static void test_parse(void) {
    slm_synth_spec s = parse_ok("llama3-8b:q4_0:n_layer=4:n_ctx=2048");
    CHECK(s.n_layer == 4 && s.n_ctx == 2048 && s.quant == SLM_SYNTH_Q4_0 && s.n_embd == 4096, "overrides");
    CHECK(!strcmp(s.name, "llama3-8b:q4_0:n_layer=4:n_ctx=2048"), "name %s", s.name);
    s = parse_ok("custom:q8_0:n_embd=512:n_head=8");
    CHECK(s.head_dim == 64 && s.n_embd == 512, "head_dim follows n_embd/n_head: %d", s.head_dim);
    const char *bad[] = {"",
                         "llama4-1b",
                         "llama3-1b:q3_k",
                         "llama3-1b:n_layer=0",
                         "custom:n_head=3",
                         "custom:q4_0:n_embd=100",
                         "custom:colour=red",
                         "custom:n_vocab=300",
                         "custom:arch=gpt"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        slm_error err = {{0}};
        CHECK(slm_synth_parse(bad[i], &s, &err) == SLM_ERR_INVALID_ARG && err.msg[0], "'%s' must be rejected", bad[i]);
    }
}

static void test_mix(void) {
    slm_synth_spec s = parse_ok("llama3-8b:q4_k_m"); /* 32 layers: more bits for 0-3, 28-31, and 6, 9, ... */
    CHECK(slm_synth_tensor_type(&s, "blk.0.attn_v.weight") == SLM_Q6_K, "layer 0 attn_v");
    CHECK(slm_synth_tensor_type(&s, "blk.4.attn_v.weight") == SLM_Q4_K, "layer 4 attn_v");
    CHECK(slm_synth_tensor_type(&s, "blk.6.ffn_down.weight") == SLM_Q6_K, "layer 6 ffn_down");
    CHECK(slm_synth_tensor_type(&s, "blk.7.ffn_down.weight") == SLM_Q4_K, "layer 7 ffn_down");
    CHECK(slm_synth_tensor_type(&s, "blk.31.ffn_down.weight") == SLM_Q6_K, "layer 31 ffn_down");
    CHECK(slm_synth_tensor_type(&s, "blk.0.attn_q.weight") == SLM_Q4_K, "attn_q");
    CHECK(slm_synth_tensor_type(&s, "blk.0.ffn_up.weight") == SLM_Q4_K, "ffn_up");
    CHECK(slm_synth_tensor_type(&s, "output.weight") == SLM_Q6_K, "output");
    CHECK(slm_synth_tensor_type(&s, "token_embd.weight") == SLM_Q4_K, "token_embd");
    CHECK(slm_synth_tensor_type(&s, "blk.0.attn_norm.weight") == SLM_F32, "norm");
    s = parse_ok("llama3-1b:q4_0"); /* tied: the embedding is the head */
    CHECK(slm_synth_tensor_type(&s, "token_embd.weight") == SLM_Q6_K, "tied token_embd");
    CHECK(slm_synth_tensor_type(&s, "blk.3.ffn_down.weight") == SLM_Q4_0, "q4_0 ffn_down");
}

static void test_fill(void) {
    const slm_dtype types[] = {SLM_Q4_0, SLM_Q8_0, SLM_Q4_K, SLM_Q5_K, SLM_Q6_K, SLM_F16};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const slm_dtype_info *ti = slm_dtype_get(types[i]);
        int64_t n = 256 * 64;
        size_t bytes = slm_dtype_row_bytes(types[i], n);
        void *buf = malloc(bytes);
        float *x = malloc((size_t)n * sizeof *x);
        CHECK(slm_synth_fill(types[i], buf, bytes, 0.02f, 7, NULL) == SLM_OK, "fill %s", ti->name);
        slm_ref_dequant_row(types[i], buf, x, n);
        double sum = 0, sq = 0;
        int bad = 0;
        for (int64_t k = 0; k < n; k++) {
            if (!isfinite(x[k])) bad++;
            sum += x[k];
            sq += (double)x[k] * x[k];
        }
        double mean = sum / n, sd = sqrt(sq / n - mean * mean);
        CHECK(bad == 0, "%s: %d non-finite values", ti->name, bad);
        CHECK(sd > 0.014 && sd < 0.028, "%s: standard deviation %.4f, want ~0.02", ti->name, sd);
        CHECK(fabs(mean) < 0.002, "%s: mean %.5f, want ~0", ti->name, mean);
        free(buf);
        free(x);
    }
    char odd[20];
    CHECK(slm_synth_fill(SLM_Q4_0, odd, 20, 0.02f, 1, NULL) == SLM_ERR_INVALID_ARG, "partial block rejected");
}

static void test_build_and_run(void) {
    slm_synth_spec s = parse_ok("custom:q4_k_m:n_layer=2");
    slm_error err = {{0}};
    void *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    CHECK(slm_synth_build(&s, 1, &a, &na, &err) == SLM_OK, "build: %s", err.msg);
    CHECK(slm_synth_build(&s, 3, &b, &nb, &err) == SLM_OK, "build: %s", err.msg);
    CHECK(a && b && na == nb && !memcmp(a, b, na), "the bytes do not depend on the thread count");
    free(b);
    slm_synth_spec s2 = parse_ok("custom:q4_k_m:n_layer=2:seed=99");
    CHECK(slm_synth_build(&s2, 2, &b, &nb, &err) == SLM_OK, "build: %s", err.msg);
    CHECK(nb == na && memcmp(a, b, na) != 0, "another seed gives other weights");
    free(b);

    slm_gguf *g = NULL;
    CHECK(slm_gguf_open_memory(a, na, &g, &err) == SLM_OK, "open: %s", err.msg);
    if (g) {
        const slm_gguf_tensor *t = slm_gguf_find_tensor(g, "blk.1.ffn_down.weight");
        CHECK(t && t->ne[0] == 512 && t->ne[1] == 256 && t->type == SLM_Q6_K, "ffn_down of layer 1 (more bits)");
        t = slm_gguf_find_tensor(g, "output.weight");
        CHECK(t && t->ne[0] == 256 && t->ne[1] == 1024 && t->type == SLM_Q6_K, "output");
        t = slm_gguf_find_tensor(g, "blk.0.attn_norm.weight");
        CHECK(t && t->type == SLM_F32 && ((const float *)t->data)[17] == 1.0f, "norms are 1");
        const slm_gguf_kv *kv = slm_gguf_find(g, "tokenizer.ggml.tokens");
        CHECK(kv && kv->arr_len == 1024, "vocabulary size");
        slm_gguf_str str;
        CHECK(kv && slm_gguf_arr_str(kv, 1016, &str) && slm_gguf_str_eq(str, "<|begin_of_text|>"), "bos text");
        uint64_t n_params = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) n_params += (uint64_t)(g->tensors[i].ne[0] * g->tensors[i].ne[1]);
        CHECK(n_params == slm_synth_param_count(&s), "tensors in the file add up to the count: %llu",
              (unsigned long long)n_params);
        /* one weight tensor must be random, not the writer's zeros */
        t = slm_gguf_find_tensor(g, "blk.0.attn_q.weight");
        int nz = 0;
        for (int i = 0; t && i < 144; i++) nz += ((const uint8_t *)t->data)[i] != 0;
        CHECK(nz > 100, "attn_q is filled (%d nonzero bytes of 144)", nz);
    }

    /* the normal load path: tokenizer, model, context, eval */
    slm_params p = slm_params_default();
    p.n_threads = 2;
    p.n_ctx = 64;
    slm_model *m = NULL;
    slm_status st = g ? slm_model_load_gguf(g, &p, NULL, &m, &err) : SLM_ERR_IO;
    CHECK(st == SLM_OK, "load: %s", err.msg);
    if (m) {
        slm_model_info info = slm_model_get_info(m);
        CHECK(info.n_layer == 2 && info.n_vocab == 1024 && info.n_embd == 256, "model info");
        int32_t ids[16];
        int n = 0;
        st = slm_tokenize(m, "the cat sat", 11, true, false, ids, 16, &n, &err);
        CHECK(st == SLM_OK && n >= 2 && ids[0] == 1016, "tokenize: %s (n=%d, first %d)", err.msg, n, n ? ids[0] : -1);
        slm_context *c = NULL;
        CHECK(slm_context_create(m, &c, &err) == SLM_OK, "context: %s", err.msg);
        if (c && st == SLM_OK) {
            CHECK(slm_eval(c, ids, n, false, &err) == SLM_OK, "eval: %s", err.msg);
            const float *lg = slm_logits(c, -1);
            int bad = 0;
            double sq = 0;
            for (int i = 0; lg && i < 1024; i++) {
                if (!isfinite(lg[i])) bad++;
                sq += (double)lg[i] * lg[i];
            }
            CHECK(lg && bad == 0 && sq > 0, "logits finite and not all zero (%d bad)", bad);
            int32_t next = 5;
            CHECK(slm_eval(c, &next, 1, false, &err) == SLM_OK, "eval one: %s", err.msg);
        }
        slm_context_free(c);
        slm_model_free(m);
    }
    free(a);
}

static void test_file(void) {
    slm_synth_spec s = parse_ok("custom:q4_0:n_layer=1:arch=qwen2");
    char path[] = "/tmp/slm_test_synth_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return;
    close(fd);
    slm_error err = {{0}};
    CHECK(slm_synth_write_file(&s, 2, path, &err) == SLM_OK, "write: %s", err.msg);
    slm_gguf *g = NULL;
    CHECK(slm_gguf_open(path, &g, &err) == SLM_OK, "reopen: %s", err.msg);
    if (g) {
        CHECK(slm_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL, "qwen2 has q/k/v biases");
        slm_gguf_str a;
        CHECK(slm_gguf_get_str(g, "general.architecture", &a) && slm_gguf_str_eq(a, "qwen2"), "architecture");
        slm_gguf_close(g);
    }
    unlink(path);
}

/* Sum of the file's bytes of every tensor named blk.IL.* */
static uint64_t layer_file_bytes(const slm_gguf *g, int il) {
    char pre[32];
    snprintf(pre, sizeof pre, "blk.%d.", il);
    uint64_t n = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name.len > strlen(pre) && !strncmp(g->tensors[i].name.ptr, pre, strlen(pre)))
            n += g->tensors[i].size;
    return n;
}

/* Runs ids through a fresh context; copies the last position's logits to out[n_vocab]. */
static bool eval_last(slm_model *m, const int32_t *ids, int n, float *out, int n_vocab) {
    slm_error err = {{0}};
    slm_context *c = NULL;
    bool ok = slm_context_create(m, &c, &err) == SLM_OK && slm_eval(c, ids, n, false, &err) == SLM_OK;
    CHECK(ok, "eval: %s", err.msg);
    const float *lg = ok ? slm_logits(c, -1) : NULL;
    if (lg) memcpy(out, lg, (size_t)n_vocab * sizeof *out);
    slm_context_free(c);
    return lg != NULL;
}

/* The Phi-4 preset at reduced width and depth: the phi3 architecture with its fused tensors, the Q4_K_M
 * mix (Q5_K qkv), loaded and run through the normal path. */
static void test_phi4_preset(void) {
    slm_synth_spec s = parse_ok("phi4-14b:q4_k_m:n_layer=2:n_embd=256:n_head=4:n_head_kv=2:n_ff=512");
    slm_error err = {{0}};
    slm_gguf *g = NULL;
    void *data = NULL;
    CHECK(slm_synth_open(&s, 2, &g, &data, &err) == SLM_OK, "build: %s", err.msg);
    if (!g) return;
    const slm_gguf_tensor *qkv = slm_gguf_find_tensor(g, "blk.1.attn_qkv.weight");
    const slm_gguf_tensor *up = slm_gguf_find_tensor(g, "blk.1.ffn_up.weight");
    CHECK(qkv && qkv->ne[0] == 256 && qkv->ne[1] == 256 + 2 * 128 && qkv->type == SLM_Q5_K, "fused attn_qkv");
    CHECK(up && up->ne[0] == 256 && up->ne[1] == 2 * 512 && !slm_gguf_find_tensor(g, "blk.1.ffn_gate.weight") &&
              !slm_gguf_find_tensor(g, "blk.1.attn_q.weight"),
          "fused gate/up, no separate tensors");
    slm_gguf_str a;
    CHECK(slm_gguf_get_str(g, "general.architecture", &a) && slm_gguf_str_eq(a, "phi3"), "architecture phi3");
    slm_params p = slm_params_default();
    p.n_threads = 2;
    slm_model *m = NULL;
    CHECK(slm_model_load_gguf(g, &p, NULL, &m, &err) == SLM_OK, "load: %s", err.msg);
    if (m) {
        CHECK(m->hp.arch == SLM_ARCH_PHI3 && m->hp.rope_neox && m->cfg.rope_attn_factor == 1.0f &&
                  !m->host.rope_freqs.buf && m->hp.sliding_window == 0 && m->cfg.n_ctx == 4096,
              "phi3 hyper-parameters (neox %d, factor %g, window %d, n_ctx %d)", m->hp.rope_neox,
              m->cfg.rope_attn_factor, m->hp.sliding_window, m->cfg.n_ctx);
        const slm_layer *L = &m->host.layers[1];
        size_t base = (size_t)(g->data_offset + qkv->offset), row = slm_dtype_row_bytes(SLM_Q5_K, 256);
        CHECK(L->wq.offset == base && L->wk.offset == base + 256 * row && L->wv.offset == base + 384 * row &&
                  L->wq.ne[1] == 256 && L->wk.ne[1] == 128 && L->wv.ne[1] == 128 && L->wv.type == SLM_Q5_K,
              "q, k, v are row ranges of attn_qkv");
        size_t ubase = (size_t)(g->data_offset + up->offset);
        CHECK(L->w_gate.offset == ubase && L->w_up.offset == ubase + 512 * slm_dtype_row_bytes(SLM_Q4_K, 256) &&
                  L->w_gate.ne[1] == 512 && L->w_up.ne[1] == 512,
              "gate, up are the halves of ffn_up");
        for (int il = 0; il < 2; il++)
            CHECK(m->layer_bytes[il] == layer_file_bytes(g, il), "layer %d: planner bytes %llu, file %llu", il,
                  (unsigned long long)m->layer_bytes[il], (unsigned long long)layer_file_bytes(g, il));
        int32_t ids[6] = {100257, 300, 17, 4000, 99999, 256};
        float *lg = malloc((size_t)m->hp.n_vocab * sizeof *lg);
        if (lg && eval_last(m, ids, 6, lg, m->hp.n_vocab)) {
            int bad = 0;
            double sq = 0;
            for (int i = 0; i < m->hp.n_vocab; i++) {
                bad += !isfinite(lg[i]);
                sq += (double)lg[i] * lg[i];
            }
            CHECK(bad == 0 && sq > 0, "phi4 logits finite and not all zero (%d bad)", bad);
        }
        free(lg);
        slm_model_free(m);
    }
    free(data);
}

/* The Qwen 3 0.6B preset at reduced depth and width but its own head shape (q 2x the residual, head_dim
 * 128): the per-head norms bound, the forward pass runs with finite logits, the planner's bytes are the file's. */
static void test_qwen3_preset(void) {
    slm_synth_spec s = parse_ok("qwen3-0.6b:q8_0:n_layer=2:n_embd=256:n_head=4:n_head_kv=2:head_dim=128:n_ff=512");
    slm_error err = {{0}};
    slm_gguf *g = NULL;
    void *data = NULL;
    CHECK(slm_synth_open(&s, 2, &g, &data, &err) == SLM_OK, "build: %s", err.msg);
    if (!g) return;
    slm_gguf_str a;
    CHECK(slm_gguf_get_str(g, "general.architecture", &a) && slm_gguf_str_eq(a, "qwen3"), "architecture qwen3");
    CHECK(!slm_gguf_find_tensor(g, "output.weight") && !slm_gguf_find_tensor(g, "blk.0.attn_q.bias"),
          "tied, no biases");
    slm_params p = slm_params_default();
    p.n_threads = 2;
    slm_model *m = NULL;
    CHECK(slm_model_load_gguf(g, &p, NULL, &m, &err) == SLM_OK, "load: %s", err.msg);
    if (m) {
        const slm_layer *L = &m->host.layers[1];
        CHECK(m->hp.arch == SLM_ARCH_QWEN3 && m->hp.rope_neox && m->hp.has_qk_norm && m->hp.head_dim == 128 &&
                  L->q_norm.buf && L->k_norm.buf && L->q_norm.ne[0] == 128 && !L->bq.buf &&
                  m->host.output.offset == m->host.tok_embd.offset,
              "qwen3 hyper-parameters and slots");
        for (int il = 0; il < 2; il++)
            CHECK(m->layer_bytes[il] == layer_file_bytes(g, il), "layer %d: planner bytes %llu, file %llu", il,
                  (unsigned long long)m->layer_bytes[il], (unsigned long long)layer_file_bytes(g, il));
        int32_t ids[5] = {151643, 300, 17, 4000, 256};
        float *lg = malloc((size_t)m->hp.n_vocab * sizeof *lg);
        if (lg && eval_last(m, ids, 5, lg, m->hp.n_vocab)) {
            int bad = 0;
            double sq = 0;
            for (int i = 0; i < m->hp.n_vocab; i++) {
                bad += !isfinite(lg[i]);
                sq += (double)lg[i] * lg[i];
            }
            CHECK(bad == 0 && sq > 0, "qwen3 logits finite and not all zero (%d bad)", bad);
        }
        free(lg);
        slm_model_free(m);
    }
    free(data);
}

/* The Gemma 3 270M preset at reduced depth and vocabulary: seven layers (six local, the sixth global), the
 * per-head and post norms bound, GeGLU and the scaled embedding in the graph, finite logits, the planner's
 * bytes the file's. */
static void test_gemma3_preset(void) {
    slm_synth_spec s = parse_ok("gemma3-270m:q8_0:n_layer=7:n_vocab=4096");
    slm_error err = {{0}};
    slm_gguf *g = NULL;
    void *data = NULL;
    CHECK(slm_synth_open(&s, 2, &g, &data, &err) == SLM_OK, "build: %s", err.msg);
    if (!g) return;
    slm_params p = slm_params_default();
    p.n_threads = 2;
    slm_model *m = NULL;
    CHECK(slm_model_load_gguf(g, &p, NULL, &m, &err) == SLM_OK, "load: %s", err.msg);
    if (m) {
        const slm_layer *L = &m->host.layers[1];
        CHECK(m->hp.arch == SLM_ARCH_GEMMA3 && m->hp.rope_neox && m->hp.has_qk_norm && m->hp.has_post_norms &&
                  m->hp.ffn_gelu && m->hp.head_dim == 256 && m->hp.sliding_window == 512 &&
                  fabsf(m->hp.embd_scale - sqrtf(640.0f)) < 1e-5f && L->q_norm.buf && L->post_attn_norm.buf &&
                  L->post_ffw_norm.buf && m->host.output.offset == m->host.tok_embd.offset,
              "gemma3 hyper-parameters and slots");
        CHECK(slm_layer_is_local(&m->hp, 0) && slm_layer_is_local(&m->hp, 4) && !slm_layer_is_local(&m->hp, 5) &&
                  slm_layer_is_local(&m->hp, 6),
              "gemma3: layer 5 global, the others local");
        CHECK(m->cfg.n_ctx == 4096, "gemma3: the default context (%d) is not cut to the window", m->cfg.n_ctx);
        for (int il = 0; il < 7; il++)
            CHECK(m->layer_bytes[il] == layer_file_bytes(g, il), "layer %d: planner bytes %llu, file %llu", il,
                  (unsigned long long)m->layer_bytes[il], (unsigned long long)layer_file_bytes(g, il));
        int32_t ids[5] = {2, 300, 17, 4000, 256};
        float *lg = malloc((size_t)m->hp.n_vocab * sizeof *lg);
        if (lg && eval_last(m, ids, 5, lg, m->hp.n_vocab)) {
            int bad = 0;
            double sq = 0;
            for (int i = 0; i < m->hp.n_vocab; i++) {
                bad += !isfinite(lg[i]);
                sq += (double)lg[i] * lg[i];
            }
            CHECK(bad == 0 && sq > 0, "gemma3 logits finite and not all zero (%d bad)", bad);
        }
        free(lg);
        slm_model_free(m);
    }
    free(data);
}

/* A tiny phi3 model with f32 weights, written by hand so that layouts and hostile variants can be made:
 * the same logical weights fused (attn_qkv, gate+up in ffn_up) or apart (attn_q/k/v, ffn_gate/ffn_up). */
enum { TE = 64, TNH = 4, TNKV = 2, THD = 16, TFF = 96, TV = 128, TL = 2, TCTX = 256 };
typedef struct tiny_opts {
    bool fused_qkv, fused_ffn;
    int qkv_rows_delta, up_rows_delta; /* hostile: fused tensors with rows missing or extra */
    int longrope;                      /* 0 none, 1 short only, 2 short and long */
    int orig_ctx, window;
    float bad_factor; /* != 0: written as factor 3 of rope_factors_short */
} tiny_opts;

typedef struct tiny_file {
    void *data;
    size_t size;
    float *pool;
} tiny_file;

static float *tiny_rand(float *at, size_t n, uint64_t seed, float scale) {
    uint64_t st = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) at[i] = slm_test_randf(&st) * scale;
    return at;
}

static bool tiny_write(const tiny_opts *o, tiny_file *f) {
    memset(f, 0, sizeof *f);
    slm_gguf_writer *w = NULL;
    slm_error err = {{0}};
    if (slm_gguf_writer_create(&w, &err)) return false;
    const int Q = TNH * THD, KV = TNKV * THD;
    size_t per_layer = 2 * TE + (size_t)TE * (Q + 2 * KV) + (size_t)Q * TE + 3 * (size_t)TE * TFF + 64;
    f->pool = malloc(((size_t)2 * TV * TE + TE + 2 * THD + TL * per_layer) * sizeof(float));
    float *at = f->pool;
    slm_gguf_writer_add_str(w, "general.architecture", "phi3");
    slm_gguf_writer_add_u32(w, "phi3.block_count", TL);
    slm_gguf_writer_add_u32(w, "phi3.embedding_length", TE);
    slm_gguf_writer_add_u32(w, "phi3.feed_forward_length", TFF);
    slm_gguf_writer_add_u32(w, "phi3.attention.head_count", TNH);
    slm_gguf_writer_add_u32(w, "phi3.attention.head_count_kv", TNKV);
    slm_gguf_writer_add_u32(w, "phi3.context_length", TCTX);
    slm_gguf_writer_add_u32(w, "phi3.rope.dimension_count", THD);
    slm_gguf_writer_add_f32(w, "phi3.attention.layer_norm_rms_epsilon", 1e-5f);
    slm_gguf_writer_add_f32(w, "phi3.rope.freq_base", 10000.0f);
    if (o->orig_ctx) slm_gguf_writer_add_u32(w, "phi3.rope.scaling.original_context_length", (uint32_t)o->orig_ctx);
    if (o->window) slm_gguf_writer_add_u32(w, "phi3.attention.sliding_window", (uint32_t)o->window);
#define T2(name, ne0, ne1, ptr)                                                                                        \
    do {                                                                                                               \
        int64_t ne_[2] = {ne0, ne1};                                                                                   \
        slm_gguf_writer_add_tensor(w, name, SLM_F32, 2, ne_, ptr, 0);                                                  \
    } while (0)
#define T1(name, ne0, ptr)                                                                                             \
    do {                                                                                                               \
        int64_t ne_[1] = {ne0};                                                                                        \
        slm_gguf_writer_add_tensor(w, name, SLM_F32, 1, ne_, ptr, 0);                                                  \
    } while (0)
    T2("token_embd.weight", TE, TV, tiny_rand(at, (size_t)TV * TE, 1, 1.0f));
    at += (size_t)TV * TE;
    T2("output.weight", TE, TV, tiny_rand(at, (size_t)TV * TE, 2, 0.2f));
    at += (size_t)TV * TE;
    float *ones = at;
    for (int i = 0; i < TE; i++) ones[i] = 1.0f;
    at += TE;
    T1("output_norm.weight", TE, ones);
    if (o->longrope) {
        /* divisors 1..4: long wavelengths slowed most, as long-context factors are */
        float *sf = at, *lf = at + THD / 2;
        for (int i = 0; i < THD / 2; i++) {
            sf[i] = 1.0f + (float)i / THD;
            lf[i] = 1.0f + 3.0f * (float)i / (THD / 2 - 1);
        }
        if (o->bad_factor != 0) sf[3] = o->bad_factor;
        at += THD;
        T1("rope_factors_short.weight", THD / 2, sf);
        if (o->longrope > 1) T1("rope_factors_long.weight", THD / 2, lf);
    }
    char nm[64];
    for (int il = 0; il < TL; il++) {
        uint64_t sd = 100 + 10 * (uint64_t)il;
        const float sc = 0.15f;
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", il);
        T1(nm, TE, ones);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", il);
        T1(nm, TE, ones);
        /* q, k, v rows in that order, contiguous: the fused tensor is their concatenation */
        float *q = tiny_rand(at, (size_t)TE * Q, sd + 1, sc);
        float *k = tiny_rand(q + (size_t)TE * Q, (size_t)TE * KV, sd + 2, sc);
        float *v = tiny_rand(k + (size_t)TE * KV, (size_t)TE * KV, sd + 3, sc);
        at = v + (size_t)TE * KV;
        if (o->fused_qkv) {
            snprintf(nm, sizeof nm, "blk.%d.attn_qkv.weight", il);
            T2(nm, TE, Q + 2 * KV + o->qkv_rows_delta, q);
        } else {
            snprintf(nm, sizeof nm, "blk.%d.attn_q.weight", il);
            T2(nm, TE, Q, q);
            snprintf(nm, sizeof nm, "blk.%d.attn_k.weight", il);
            T2(nm, TE, KV, k);
            snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", il);
            T2(nm, TE, KV, v);
        }
        snprintf(nm, sizeof nm, "blk.%d.attn_output.weight", il);
        T2(nm, Q, TE, tiny_rand(at, (size_t)Q * TE, sd + 4, sc));
        at += (size_t)Q * TE;
        float *gt = tiny_rand(at, (size_t)TE * TFF, sd + 5, sc);
        float *up = tiny_rand(gt + (size_t)TE * TFF, (size_t)TE * TFF, sd + 6, sc);
        at = up + (size_t)TE * TFF;
        if (o->fused_ffn) {
            snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", il);
            T2(nm, TE, 2 * TFF + o->up_rows_delta, gt);
        } else {
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate.weight", il);
            T2(nm, TE, TFF, gt);
            snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", il);
            T2(nm, TE, TFF, up);
        }
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", il);
        T2(nm, TFF, TE, tiny_rand(at, (size_t)TFF * TE, sd + 7, sc));
        at += (size_t)TFF * TE;
    }
#undef T1
#undef T2
    bool ok = slm_gguf_writer_write_memory(w, &f->data, &f->size, &err) == SLM_OK;
    CHECK(ok, "tiny phi3: %s", err.msg);
    slm_gguf_writer_free(w);
    return ok;
}

static void tiny_free(tiny_file *f) {
    free(f->data);
    free(f->pool);
}

/* Loads a tiny file (n_ctx 0: the default); returns the status, the model in *out when it loaded. */
static slm_status tiny_load(const tiny_file *f, int n_ctx, slm_model **out, slm_error *err) {
    *out = NULL;
    slm_gguf *g = NULL;
    slm_status s = slm_gguf_open_memory(f->data, f->size, &g, err);
    if (s) return s;
    slm_params p = slm_params_default();
    p.n_threads = 2;
    p.n_ctx = n_ctx;
    slm_debug_params dbg = {.f32_activations = true};
    return slm_model_load_gguf(g, &p, &dbg, out, err);
}

static void test_phi3_layouts(void) {
    const int32_t ids[7] = {1, 77, 3, 127, 64, 5, 90};
    float want[TV], got[TV];
    tiny_opts o = {.fused_qkv = false, .fused_ffn = false};
    tiny_file f;
    slm_model *m = NULL;
    slm_error err = {{0}};
    bool have = false;
    if (tiny_write(&o, &f) && tiny_load(&f, 64, &m, &err) == SLM_OK) have = eval_last(m, ids, 7, want, TV);
    CHECK(have, "separate layout: %s", err.msg);
    slm_model_free(m);
    tiny_free(&f);
    /* every mix of fused and separate gives the same function: rows q|k|v and gate|up in that order */
    for (int variant = 1; variant < 4 && have; variant++) {
        o.fused_qkv = variant & 1;
        o.fused_ffn = variant & 2;
        if (!tiny_write(&o, &f)) continue;
        CHECK(tiny_load(&f, 64, &m, &err) == SLM_OK, "variant %d: %s", variant, err.msg);
        if (m && eval_last(m, ids, 7, got, TV)) {
            double md = 0;
            for (int i = 0; i < TV; i++) md = fmax(md, fabs(got[i] - want[i]));
            CHECK(md <= 1e-5, "fused qkv %d, fused ffn %d: logits differ from the separate layout by %g", o.fused_qkv,
                  o.fused_ffn, md);
        }
        slm_model_free(m);
        tiny_free(&f);
    }

    /* hostile: fused tensors whose row counts do not add up fail naming the tensor */
    struct {
        int dq, du;
        const char *name;
    } bad[] = {{-1, 0, "blk.0.attn_qkv.weight"}, {16, 0, "blk.0.attn_qkv.weight"}, {0, -TFF, "blk.0.ffn_up.weight"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tiny_opts h = {.fused_qkv = true, .fused_ffn = true, .qkv_rows_delta = bad[i].dq, .up_rows_delta = bad[i].du};
        if (!tiny_write(&h, &f)) continue;
        slm_error e = {{0}};
        slm_status st = tiny_load(&f, 64, &m, &e);
        CHECK(st == SLM_ERR_FORMAT && strstr(e.msg, bad[i].name) && strstr(e.msg, "expected"),
              "rows %+d/%+d: status %d, message '%s' must name %s", bad[i].dq, bad[i].du, st, e.msg, bad[i].name);
        slm_model_free(m);
        tiny_free(&f);
    }
}

static void test_phi3_longrope_and_window(void) {
    tiny_file f;
    slm_model *m = NULL;
    slm_error err = {{0}};
    /* short and long factors: chosen by the context against the original one; magnitude from 256 / 64 */
    tiny_opts o = {.fused_qkv = true, .fused_ffn = true, .longrope = 2, .orig_ctx = 64};
    if (tiny_write(&o, &f)) {
        const slm_gguf_tensor *ts = NULL, *tl = NULL;
        for (int pass = 0; pass < 2; pass++) {
            int n_ctx = pass ? 128 : 64;
            CHECK(tiny_load(&f, n_ctx, &m, &err) == SLM_OK, "longrope n_ctx %d: %s", n_ctx, err.msg);
            if (!m) continue;
            ts = slm_gguf_find_tensor(m->gguf, "rope_factors_short.weight");
            tl = slm_gguf_find_tensor(m->gguf, "rope_factors_long.weight");
            const slm_gguf_tensor *want = pass ? tl : ts;
            CHECK(m->host.rope_freqs.buf && want && m->host.rope_freqs.offset == m->gguf->data_offset + want->offset,
                  "n_ctx %d uses the %s factors", n_ctx, pass ? "long" : "short");
            double mag = sqrt(1.0 + log(256.0 / 64.0) / log(64.0));
            CHECK(fabs(m->cfg.rope_attn_factor - mag) < 1e-6, "attention factor %g, want %g", m->cfg.rope_attn_factor,
                  mag);
            float lg[TV];
            int32_t ids[3] = {4, 9, 16};
            if (eval_last(m, ids, 3, lg, TV)) {
                int bad = 0;
                for (int i = 0; i < TV; i++) bad += !isfinite(lg[i]);
                CHECK(bad == 0, "longrope logits finite");
            }
            slm_model_free(m);
        }
        tiny_free(&f);
    }
    struct {
        tiny_opts o;
        slm_status st;
        const char *msg;
    } bad[] = {
        {{.fused_qkv = true, .fused_ffn = true, .longrope = 1, .orig_ctx = 64},
         SLM_ERR_UNSUPPORTED,
         "rope_factors_short.weight"},
        {{.fused_qkv = true, .fused_ffn = true, .longrope = 2}, SLM_ERR_FORMAT, "original_context_length"},
        {{.fused_qkv = true, .fused_ffn = true, .longrope = 2, .orig_ctx = 64, .bad_factor = NAN},
         SLM_ERR_FORMAT,
         "rope_factors_short.weight"},
        {{.fused_qkv = true, .fused_ffn = true, .longrope = 2, .orig_ctx = 64, .bad_factor = -1.0f},
         SLM_ERR_FORMAT,
         "rope_factors_short.weight"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!tiny_write(&bad[i].o, &f)) continue;
        slm_error e = {{0}};
        slm_status st = tiny_load(&f, 64, &m, &e);
        CHECK(st == bad[i].st && strstr(e.msg, bad[i].msg), "longrope case %zu: status %d, message '%s'", i, st, e.msg);
        slm_model_free(m);
        tiny_free(&f);
    }
    /* a sliding window of 32: the default context stays within it, a longer one asked for is refused */
    tiny_opts w = {.fused_qkv = true, .fused_ffn = true, .window = 32};
    if (tiny_write(&w, &f)) {
        CHECK(tiny_load(&f, 0, &m, &err) == SLM_OK && m && m->cfg.n_ctx == 32, "window: default context %d, want 32",
              m ? m->cfg.n_ctx : -1);
        slm_model_free(m);
        slm_error e = {{0}};
        CHECK(tiny_load(&f, 64, &m, &e) == SLM_ERR_UNSUPPORTED && strstr(e.msg, "sliding_window"),
              "context 64 over a window of 32: '%s'", e.msg);
        slm_model_free(m);
        tiny_free(&f);
    }
}

int main(void) {
    test_param_counts();
    test_parse();
    test_mix();
    test_fill();
    test_build_and_run();
    test_file();
    test_phi4_preset();
    test_gemma3_preset();
    test_qwen3_preset();
    test_phi3_layouts();
    test_phi3_longrope_and_window();
    return slm_test_finish("test_synth");
}
