/* What loading refuses, through the public load API: a tiny synthetic model with one setting made nonsense
 * (or one tensor missing) must fail with the right status and the key's name in the message; a path that is
 * not a regular file (FIFO, directory, device) must fail at once instead of blocking; and a model whose
 * weights hold a NaN must make slm_eval fail with SLM_ERR_NUMERIC instead of returning NaN logits. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "slm.h"
#include "synth_gguf.h"
#include "test_util.h"

/* Two layers, grouped-query heads (2 q heads over 1 kv head of 32), q8_0: a few hundred KiB. */
#define TINY "custom:q8_0:n_layer=2:n_embd=64:n_head=2:n_head_kv=1:head_dim=32:n_ff=128:n_vocab=512:n_ctx=256"

static slm_synth_spec tiny(void) {
    slm_synth_spec s;
    slm_error err = {{0}};
    if (slm_synth_parse(TINY, &s, &err)) {
        fprintf(stderr, "parse %s: %s\n", TINY, err.msg);
        exit(1);
    }
    return s;
}

static slm_params cpu_params(void) {
    slm_params p = slm_params_default();
    p.device = "cpu";
    p.n_threads = 1;
    p.n_ctx = 32;
    return p;
}

/* Loads the tiny model with the edits; returns the status, the message in err. */
static slm_status load_edited(const slm_synth_spec *s, const slm_synth_edits *e, slm_model **m, void **data,
                              slm_error *err) {
    size_t size = 0;
    *m = NULL;
    *data = NULL;
    slm_status st = slm_synth_build_edited(s, e, 1, data, &size, err);
    if (st) {
        fprintf(stderr, "building the edited model failed: %s\n", err->msg);
        return st;
    }
    slm_params p = cpu_params();
    return slm_model_load_memory(*data, size, &p, m, err);
}

typedef struct bad_case {
    const char *what;
    slm_synth_kv kv;    /* the one edited key (kv.key NULL: none) */
    const char *drop;   /* a tensor left out (NULL: none) */
    int n_layer;        /* the spec's layers, when the case needs a different count (0: 2) */
    slm_status want;    /* SLM_OK: must load and run */
    const char *needle; /* in the message */
} bad_case;

static void test_settings(void) {
    const slm_gguf_type U32 = SLM_GGUF_UINT32, F32 = SLM_GGUF_FLOAT32, STR = SLM_GGUF_STRING;
    const bad_case cases[] = {
        {"unedited", {0}, NULL, 0, SLM_OK, ""},
        {"rope base -1", {"llama.rope.freq_base", F32, -1}, NULL, 0, SLM_ERR_FORMAT, "llama.rope.freq_base is -1"},
        {"rope base 0", {"llama.rope.freq_base", F32, 0}, NULL, 0, SLM_ERR_FORMAT, "llama.rope.freq_base is 0"},
        {"rope base 0.5", {"llama.rope.freq_base", F32, 0.5}, NULL, 0, SLM_ERR_FORMAT, "llama.rope.freq_base"},
        {"rope base NaN", {"llama.rope.freq_base", F32, NAN}, NULL, 0, SLM_ERR_FORMAT, "llama.rope.freq_base"},
        {"eps 0",
         {"llama.attention.layer_norm_rms_epsilon", F32, 0},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.attention.layer_norm_rms_epsilon is 0"},
        {"eps < 0",
         {"llama.attention.layer_norm_rms_epsilon", F32, -1e-5},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.attention.layer_norm_rms_epsilon"},
        {"eps inf",
         {"llama.attention.layer_norm_rms_epsilon", F32, INFINITY},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.attention.layer_norm_rms_epsilon"},
        /* three layers of tensors, block_count 2: layer 2 would be silently skipped */
        {"extra layer",
         {"llama.block_count", U32, 2},
         NULL,
         3,
         SLM_ERR_FORMAT,
         "llama.block_count is 2 but the file has tensors of layer 2"},
        {"missing layer",
         {"llama.block_count", U32, 3},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.block_count is 3 but the file has no tensors of layer 2"},
        {"block_count 0", {"llama.block_count", U32, 0}, NULL, 0, SLM_ERR_FORMAT, "llama.block_count is 0"},
        {"missing tensor", {0}, "blk.1.ffn_down.weight", 0, SLM_ERR_FORMAT, "blk.1.ffn_down.weight"},
        {"head_count 0",
         {"llama.attention.head_count", U32, 0},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.attention.head_count is 0"},
        {"kv heads do not divide",
         {"llama.attention.head_count_kv", U32, 3},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.attention.head_count_kv is 3"},
        {"key_length odd",
         {"llama.attention.key_length", U32, 31},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.attention.key_length) is 31"},
        {"key_length huge",
         {"llama.attention.key_length", U32, 1024},
         NULL,
         0,
         SLM_ERR_UNSUPPORTED,
         "llama.attention.key_length) is 1024"},
        {"value_length differs",
         {"llama.attention.value_length", U32, 16},
         NULL,
         0,
         SLM_ERR_UNSUPPORTED,
         "llama.attention.value_length is 16"},
        {"rope dims odd",
         {"llama.rope.dimension_count", U32, 15},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.rope.dimension_count is 15"},
        {"rope dims > head",
         {"llama.rope.dimension_count", U32, 64},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.rope.dimension_count is 64"},
        {"context 0", {"llama.context_length", U32, 0}, NULL, 0, SLM_ERR_FORMAT, "llama.context_length is 0"},
        {"vocab_size vs tokens",
         {"llama.vocab_size", U32, 500},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "tokenizer.ggml.tokens has 512 entries but the vocabulary size (llama.vocab_size) is 500"},
        {"vocab_size 0", {"llama.vocab_size", U32, 0}, NULL, 0, SLM_ERR_FORMAT, "llama.vocab_size is 0"},
        {"embedding_length vs tensors",
         {"llama.embedding_length", U32, 96},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "token_embd.weight has shape [64, 512, 1, 1] but the model has llama.embedding_length 96"},
        {"yarn",
         {"llama.rope.scaling.type", STR, 0, "yarn"},
         NULL,
         0,
         SLM_ERR_UNSUPPORTED,
         "llama.rope.scaling.type is yarn"},
        {"unknown rope scaling",
         {"llama.rope.scaling.type", STR, 0, "wavy"},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.rope.scaling.type is 'wavy'"},
        {"linear without factor",
         {"llama.rope.scaling.type", STR, 0, "linear"},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.rope.scaling.factor"},
        {"attn_factor < 0",
         {"llama.rope.scaling.attn_factor", F32, -1},
         NULL,
         0,
         SLM_ERR_FORMAT,
         "llama.rope.scaling.attn_factor is -1"},
        {"experts", {"llama.expert_count", U32, 8}, NULL, 0, SLM_ERR_UNSUPPORTED, "llama.expert_count is 8"},
        /* the GGUF spec: a multiple of 8 (smaller ones misalign the f32/f16 tensor data) */
        {"alignment 4", {"general.alignment", U32, 4}, NULL, 0, SLM_ERR_FORMAT, "general.alignment = 4"},
        {"alignment 8", {"general.alignment", U32, 8}, NULL, 0, SLM_OK, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        slm_synth_spec s = tiny();
        if (c->n_layer) s.n_layer = c->n_layer;
        slm_synth_edits e = {
            .kvs = &c->kv, .n_kvs = c->kv.key ? 1 : 0, .drop_tensors = &c->drop, .n_drop_tensors = c->drop ? 1 : 0};
        slm_model *m;
        void *data;
        slm_error err = {{0}};
        slm_status st = load_edited(&s, &e, &m, &data, &err);
        CHECK(st == c->want, "%s: status %s, want %s (%s)", c->what, slm_status_name(st), slm_status_name(c->want),
              err.msg);
        CHECK(strstr(err.msg, c->needle) != NULL, "%s: message '%s' lacks '%s'", c->what, err.msg, c->needle);
        CHECK(st != SLM_OK || m, "%s: loaded without a model", c->what);
        if (!st && m) {
            /* a model that loads runs to finite logits */
            slm_context *ctx = NULL;
            st = slm_context_create(m, &ctx, &err);
            CHECK(st == SLM_OK, "%s: context: %s", c->what, err.msg);
            int32_t toks[3] = {1, 2, 3};
            if (!st) st = slm_eval(ctx, toks, 3, true, &err);
            CHECK(st == SLM_OK, "%s: eval: %s", c->what, err.msg);
            slm_context_free(ctx);
        }
        slm_model_free(m);
        free(data);
    }
}

/* A NaN in a weight: slm_eval fails with SLM_ERR_NUMERIC naming the position, and nothing is appended. */
static void test_nan_logits(void) {
    slm_synth_spec s = tiny();
    void *data = NULL;
    size_t size = 0;
    slm_error err = {{0}};
    slm_status st = slm_synth_build(&s, 1, &data, &size, &err);
    CHECK(st == SLM_OK, "build: %s", err.msg);
    if (st) return;
    slm_gguf *g = NULL;
    st = slm_gguf_open_memory(data, size, &g, &err);
    CHECK(st == SLM_OK, "open: %s", err.msg);
    if (st) {
        free(data);
        return;
    }
    const slm_gguf_tensor *t = slm_gguf_find_tensor(g, "output_norm.weight"); /* f32 */
    CHECK(t && t->type == SLM_F32, "output_norm.weight is f32");
    if (t) {
        float nan = NAN;
        memcpy((uint8_t *)data + ((const uint8_t *)t->data - g->base) + 4 * 5, &nan, 4);
    }
    slm_gguf_close(g);
    slm_params p = cpu_params();
    slm_model *m = NULL;
    st = slm_model_load_memory(data, size, &p, &m, &err);
    CHECK(st == SLM_OK, "a NaN weight still loads (weights are not scanned): %s", err.msg);
    slm_context *c = NULL;
    if (!st) st = slm_context_create(m, &c, &err);
    if (!st) {
        int32_t toks[4] = {5, 6, 7, 8};
        st = slm_eval(c, toks, 4, false, &err);
        CHECK(st == SLM_ERR_NUMERIC, "eval status %s: %s", slm_status_name(st), err.msg);
        CHECK(strstr(err.msg, "non-finite logit") && strstr(err.msg, "position 3"), "message: %s", err.msg);
        CHECK(slm_context_pos(c) == 0, "the failed batch was appended (pos %d)", slm_context_pos(c));
        st = slm_eval(c, toks, 2, true, &err);
        CHECK(st == SLM_ERR_NUMERIC && strstr(err.msg, "position 0"), "all logits: %s: %s", slm_status_name(st),
              err.msg);
    }
    slm_context_free(c);
    slm_model_free(m);
    free(data);
}

/* Non-regular files fail at once with SLM_ERR_IO; a blocking open of the FIFO would hang (the alarm turns
 * a hang into a failure instead of a stuck test). */
static void test_not_regular(void) {
    char dir[] = "/tmp/slm_test_validate_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/model.gguf", dir);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo %s", fifo);
    const char *paths[] = {fifo, dir, "/dev/zero", "/dev/null"};
    const char *kinds[] = {"a FIFO", "a directory", "a character device", "a character device"};
    alarm(30);
    for (int i = 0; i < 4; i++) {
        slm_params p = cpu_params();
        slm_model *m = NULL;
        slm_error err = {{0}};
        slm_status st = slm_model_load(paths[i], &p, &m, &err);
        CHECK(st == SLM_ERR_IO && !m, "%s: status %s (%s)", paths[i], slm_status_name(st), err.msg);
        CHECK(strstr(err.msg, "is not a regular file") && strstr(err.msg, kinds[i]), "%s: message '%s'", paths[i],
              err.msg);
        slm_model_free(m);
    }
    alarm(0);
    unlink(fifo);
    rmdir(dir);
}

/* qwen3's per-head norms are required and must be [head_dim]: without them the layer would run as another
 * model. */
static void test_qwen3_norms(void) {
    slm_synth_spec s;
    slm_error err = {{0}};
    if (slm_synth_parse("custom:q8_0:arch=qwen3:n_layer=2:n_head=4:head_dim=128", &s, &err)) {
        CHECK(0, "parse: %s", err.msg);
        return;
    }
    const char *drop = "blk.1.attn_k_norm.weight";
    slm_synth_edits none = {0}, dropped = {.drop_tensors = &drop, .n_drop_tensors = 1};
    const slm_synth_edits *edits[2] = {&none, &dropped};
    for (int i = 0; i < 2; i++) {
        slm_model *m;
        void *data;
        memset(&err, 0, sizeof err);
        slm_status st = load_edited(&s, edits[i], &m, &data, &err);
        if (i == 0) CHECK(st == SLM_OK && m, "qwen3 loads: %s", err.msg);
        else
            CHECK(st == SLM_ERR_FORMAT && strstr(err.msg, drop), "qwen3 without %s: %s (%s)", drop, slm_status_name(st),
                  err.msg);
        slm_model_free(m);
        free(data);
    }
}

int main(void) {
    test_not_regular();
    test_qwen3_norms();
    test_settings();
    test_nan_logits();
    return slm_test_finish("test_model_validate");
}
