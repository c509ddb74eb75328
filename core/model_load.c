/* Loading a model, the public entry points: open the file, read the hyper-parameters and validate them
 * (model_validate.c), resolve the derived values, bind the weights (model.c), read the tokenizer, place the
 * weights on devices (model_place.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"
#include "model_place.h"
#include "model_validate.h"
#include "tokenizer.h"

slm_params slm_params_default(void) {
    slm_params p;
    memset(&p, 0, sizeof p);
    p.device = "auto";
    p.n_gpu_layers = SLM_NGL_AUTO;
    return p;
}

/* "rope,swiglu" -> a bit per op kind (testing: GPUs refuse them, see slm_debug.h). */
static slm_status parse_refused_ops(const char *list, uint32_t *mask, slm_error *err) {
    *mask = 0;
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ",");
        int k = 0;
        while (k < SLM_OP_KIND_COUNT &&
               (strlen(slm_op_kind_name((slm_op_kind)k)) != len || strncmp(slm_op_kind_name((slm_op_kind)k), p, len)))
            k++;
        if (k == SLM_OP_KIND_COUNT)
            return slm_fail(err, SLM_ERR_INVALID_ARG, "gpu_refuse_ops '%s': unknown op kind '%.*s'", list, (int)len, p);
        *mask |= 1u << k;
        p += len + (p[len] == ',');
    }
    return SLM_OK;
}

slm_status slm_model_load_gguf(slm_gguf *g, const slm_params *params, const slm_debug_params *dbg, slm_model **out,
                               slm_error *err) {
    *out = NULL;
    slm_model *m = calloc(1, sizeof *m);
    if (!m) {
        slm_gguf_close(g);
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory loading a model");
    }
    m->gguf = g;
    m->params = params ? *params : slm_params_default();
    if (dbg) m->dbg = *dbg;
    m->dbg.gpu_refuse_ops = NULL; /* parsed here; the caller's string need not outlive the call */
    slm_status s = parse_refused_ops(dbg ? dbg->gpu_refuse_ops : NULL, &m->gpu_refused_ops, err);
    if (!s) s = slm_arch_read_hparams(g, &m->hp, err);
    if (!s) s = slm_model_validate(g, &m->hp, err);
    if (!s) s = slm_model_config_resolve(g, &m->hp, &m->params, &m->cfg, err);
    if (!s) s = slm_model_bind(m, err);
    if (!s && slm_gguf_find(g, "tokenizer.ggml.model")) s = slm_tokenizer_create(g, &m->tok, err);
    if (!s) s = slm_model_place(m, err);
    if (s) {
        slm_model_free(m);
        return s;
    }
    *out = m;
    return SLM_OK;
}

slm_status slm_model_load_debug(const char *path, const slm_params *params, const slm_debug_params *dbg,
                                slm_model **out, slm_error *err) {
    *out = NULL;
    slm_gguf *g = NULL;
    slm_status s = slm_gguf_open(path, &g, err);
    if (s) return s;
    return slm_model_load_gguf(g, params, dbg, out, err);
}

slm_status slm_model_load(const char *path, const slm_params *params, slm_model **out, slm_error *err) {
    return slm_model_load_debug(path, params, NULL, out, err);
}

slm_status slm_model_load_memory_debug(const void *data, size_t size, const slm_params *params,
                                       const slm_debug_params *dbg, slm_model **out, slm_error *err) {
    *out = NULL;
    slm_gguf *g = NULL;
    slm_status s = slm_gguf_open_memory(data, size, &g, err);
    if (s) return s;
    return slm_model_load_gguf(g, params, dbg, out, err);
}

slm_status slm_model_load_memory(const void *data, size_t size, const slm_params *params, slm_model **out,
                                 slm_error *err) {
    return slm_model_load_memory_debug(data, size, params, NULL, out, err);
}

void slm_model_free(slm_model *m) {
    if (!m) return;
    slm_model_unplace(m);
    if (m->tok) slm_tokenizer_free(m->tok);
    slm_model_unbind(m);
    slm_gguf_close(m->gguf);
    free(m);
}

const slm_tokenizer *slm_model_tokenizer(const slm_model *m) { return m->tok; }

const char *slm_model_chat_template(const slm_model *m) { return m->chat_template; }

slm_model_info slm_model_get_info(const slm_model *m) {
    slm_model_info i;
    memset(&i, 0, sizeof i);
    i.arch = m->hp.arch_name;
    i.name = m->name;
    i.n_layer = m->hp.n_layer;
    i.n_embd = m->hp.n_embd;
    i.n_head = m->hp.n_head;
    i.n_head_kv = m->hp.n_head_kv;
    i.n_ff = m->hp.n_ff;
    i.n_vocab = m->hp.n_vocab;
    i.n_ctx_train = m->hp.n_ctx_train;
    for (uint64_t t = 0; t < m->gguf->n_tensors; t++) {
        const slm_gguf_tensor *gt = &m->gguf->tensors[t];
        i.n_params += (uint64_t)(gt->ne[0] * gt->ne[1] * gt->ne[2] * gt->ne[3]);
        i.weight_bytes += gt->size;
    }
    return i;
}
