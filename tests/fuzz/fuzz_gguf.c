/* libFuzzer target: opens the input as a GGUF file from memory and, when it opens, reads every kv, array
 * element (nested ones too), key lookup and tensor byte through the public accessors, so that any offset the
 * reader accepted but should not have shows up as an ASan report. A failed open must leave a message.
 *
 * A file that opens then goes through model loading (hyper-parameter validation, binding, tokenizer) on the
 * CPU with a tiny context, and a model that loads evaluates two tokens: the eval must give finite logits or
 * fail with a message (SLM_ERR_NUMERIC for weights that make NaN). So a setting the validation lets through
 * but the forward pass cannot run shows up as a crash, a sanitizer report or an abort here.
 *
 * Seed: LLVMFuzzerInitialize writes a tiny synthetic model (support/synth.c, ~30 KB) into the first corpus
 * directory on the command line, so the fuzzer starts from a file that loads instead of having to discover
 * the whole layout of a model. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "slm.h"
#include "synth.h"

/* One layer, tied embeddings, the smallest vocabulary the synthetic tokenizer takes. */
#define SEED_SPEC "custom:q8_0:n_layer=1:n_embd=32:n_head=2:n_head_kv=1:head_dim=16:n_ff=64:n_vocab=304:n_ctx=64:tied=1"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *dir = NULL;
    for (int i = 1; i < *argc && !dir; i++) {
        struct stat st;
        if ((*argv)[i][0] != '-' && stat((*argv)[i], &st) == 0 && S_ISDIR(st.st_mode)) dir = (*argv)[i];
    }
    if (!dir) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-tiny-llama.gguf", dir);
    slm_synth_spec spec;
    slm_error err;
    if (slm_synth_parse(SEED_SPEC, &spec, &err) || slm_synth_write_file(&spec, 1, path, &err))
        fprintf(stderr, "fuzz_gguf: no seed model: %s\n", err.msg);
    return 0;
}

static volatile uint64_t g_sink; /* keeps the reads from being optimised away */

static uint64_t touch_kv(const slm_gguf_kv *kv, int depth) {
    uint64_t acc = 0, u;
    int64_t i;
    double d;
    float f;
    bool b;
    slm_gguf_str s;
    acc += slm_gguf_kv_u64(kv, &u) ? u : 0;
    acc += slm_gguf_kv_i64(kv, &i) ? (uint64_t)i : 0;
    acc += slm_gguf_kv_f64(kv, &d) ? (d == d) : 0;
    acc += slm_gguf_kv_bool(kv, &b) ? b : 0;
    if (slm_gguf_kv_str(kv, &s) && s.len) acc += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
    if (kv->type != SLM_GGUF_ARRAY) return acc;
    /* Every element of small arrays, the ends of large ones, and one past the end. */
    for (uint64_t k = 0; k <= kv->arr_len; k++) {
        if (k == 64 && kv->arr_len > 128) k = kv->arr_len - 64;
        acc += slm_gguf_arr_u64(kv, k, &u) ? u : 0;
        acc += slm_gguf_arr_i64(kv, k, &i) ? (uint64_t)i : 0;
        acc += slm_gguf_arr_f64(kv, k, &d) ? (d == d) : 0;
        acc += slm_gguf_arr_f32(kv, k, &f) ? (f == f) : 0;
        acc += slm_gguf_arr_bool(kv, k, &b) ? b : 0;
        if (slm_gguf_arr_str(kv, k, &s) && s.len) acc += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
        slm_gguf_kv sub;
        if (slm_gguf_arr_nested(kv, k, &sub)) {
            if (k >= kv->arr_len) abort(); /* out-of-range access must be refused */
            if (depth < SLM_GGUF_MAX_DEPTH + 2) acc += touch_kv(&sub, depth + 1);
        }
    }
    return acc;
}

/* Loads the file as a model and, when it loads, evaluates two tokens. Failures must explain themselves;
 * success must give finite logits. */
static void load_and_eval(const uint8_t *data, size_t size) {
    slm_params p = slm_params_default();
    p.device = "cpu";
    p.n_threads = 1;
    p.n_ctx = 8; /* the file's context length could ask for gigabytes of KV cache */
    p.n_batch = 4;
    slm_model *m = NULL;
    slm_error err;
    err.msg[0] = 0;
    if (slm_model_load_memory(data, size, &p, &m, &err) != SLM_OK) {
        if (!err.msg[0] || m) abort();
        return;
    }
    slm_context *c = NULL;
    err.msg[0] = 0;
    if (slm_context_create(m, &c, &err) != SLM_OK) {
        if (!err.msg[0] || c) abort();
        slm_model_free(m);
        return;
    }
    int n_vocab = slm_model_get_info(m).n_vocab;
    int32_t toks[2] = {0, n_vocab - 1};
    err.msg[0] = 0;
    slm_status s = slm_eval(c, toks, 2, true, &err);
    if (s != SLM_OK) {
        if (!err.msg[0]) abort();
    } else {
        for (int i = 0; i < 2; i++) {
            const float *lg = slm_logits(c, i);
            if (!lg) abort();
            for (int k = 0; k < n_vocab; k++)
                if (!(lg[k] == lg[k]) || lg[k] - lg[k] != 0.0f) abort(); /* NaN or inf passed the check */
        }
    }
    slm_context_free(c);
    slm_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    slm_gguf *g = NULL;
    slm_error err;
    err.msg[0] = 0;
    if (slm_gguf_open_memory(data, size, &g, &err) != SLM_OK) {
        if (!err.msg[0] || g) abort(); /* failures must explain themselves and return nothing */
        return 0;
    }
    uint64_t acc = g->version + g->alignment + g->data_offset;
    char name[128];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const slm_gguf_kv *kv = &g->kv[i];
        acc += touch_kv(kv, 0);
        if (kv->key.len < sizeof name) {
            memcpy(name, kv->key.ptr, kv->key.len);
            name[kv->key.len] = 0;
            if (strlen(name) == kv->key.len && slm_gguf_find(g, name) != kv) abort();
            uint64_t u;
            float f;
            bool b;
            slm_gguf_str s;
            acc += slm_gguf_get_u64(g, name, &u) + slm_gguf_get_f32(g, name, &f) + slm_gguf_get_bool(g, name, &b) +
                slm_gguf_get_str(g, name, &s);
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        const uint8_t *p = t->data;
        if (t->size == 0 || t->offset % g->alignment) abort();
        acc += p[0] + p[t->size - 1];
        if (t->name.len < sizeof name) {
            memcpy(name, t->name.ptr, t->name.len);
            name[t->name.len] = 0;
            if (strlen(name) == t->name.len && slm_gguf_find_tensor(g, name) != t) abort();
        }
    }
    acc += slm_gguf_find(g, "general.architecture") != NULL;
    g_sink = acc;
    slm_gguf_close(g);
    load_and_eval(data, size);
    return 0;
}
