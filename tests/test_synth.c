/* Synthetic models: preset shapes against the published parameter counts, the quantization mix, the random
 * blocks (finite, ~0.02 spread), determinism, and a small model loaded and run through the normal path. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "model.h"
#include "quant_ref.h"
#include "slm.h"
#include "synth.h"
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
     * (the model cards say 1.24B, 3.21B, 8.03B, 14.7B and 14.7B) */
    struct { const char *spec; uint64_t want; double card; } cases[] = {
        {"llama3-1b:q4_0", 1235814400ull, 1.24e9},   {"llama3-3b:q4_k_m", 3212749824ull, 3.21e9},
        {"llama3-8b:q4_k_m", 8030261248ull, 8.03e9}, {"qwen2.5-14b:q4_k_m", 14770033664ull, 14.77e9},
        {"phi4-14b:q4_k_m", 14659507200ull, 14.66e9},
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
    s = parse_ok("phi4-14b");
    CHECK(!strcmp(s.arch, "llama") && s.n_head_kv == 10 && s.n_ff == 17920 && s.quant == SLM_SYNTH_Q4_K_M, "phi4");
}

static void test_parse(void) {
    slm_synth_spec s = parse_ok("llama3-8b:q4_0:n_layer=4:n_ctx=2048");
    CHECK(s.n_layer == 4 && s.n_ctx == 2048 && s.quant == SLM_SYNTH_Q4_0 && s.n_embd == 4096, "overrides");
    CHECK(!strcmp(s.name, "llama3-8b:q4_0:n_layer=4:n_ctx=2048"), "name %s", s.name);
    s = parse_ok("custom:q8_0:n_embd=512:n_head=8");
    CHECK(s.head_dim == 64 && s.n_embd == 512, "head_dim follows n_embd/n_head: %d", s.head_dim);
    const char *bad[] = {"", "llama4-1b", "llama3-1b:q3_k", "llama3-1b:n_layer=0", "custom:n_head=3",
                         "custom:q4_0:n_embd=100", "custom:colour=red", "custom:n_vocab=300", "custom:arch=gpt"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        slm_error err = {{0}};
        CHECK(slm_synth_parse(bad[i], &s, &err) == SLM_ERR_INVALID_ARG && err.msg[0], "'%s' must be rejected",
              bad[i]);
    }
}

static void test_mix(void) {
    slm_synth_spec s = parse_ok("llama3-8b:q4_k_m");  /* 32 layers: more bits for 0-3, 28-31, and 6, 9, ... */
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
    s = parse_ok("llama3-1b:q4_0");  /* tied: the embedding is the head */
    CHECK(slm_synth_tensor_type(&s, "token_embd.weight") == SLM_Q6_K, "tied token_embd");
    CHECK(slm_synth_tensor_type(&s, "blk.3.ffn_down.weight") == SLM_Q4_0, "q4_0 ffn_down");
}

static void test_fill(void) {
    const slm_dtype types[] = {SLM_Q4_0, SLM_Q8_0, SLM_Q4_K, SLM_Q6_K, SLM_F16};
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
        for (uint64_t i = 0; i < g->n_tensors; i++)
            n_params += (uint64_t)(g->tensors[i].ne[0] * g->tensors[i].ne[1]);
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
    slm_status st = g ? slm_model_load_gguf(g, &p, &m, &err) : SLM_ERR_IO;
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

int main(void) {
    test_param_counts();
    test_parse();
    test_mix();
    test_fill();
    test_build_and_run();
    test_file();
    return slm_test_finish("test_synth");
}
