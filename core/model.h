/* A loaded model: what the file says (hyper-parameters), what is derived from it once (model_config.h), the
 * tokenizer, every weight bound to a per-layer slot with its shape checked, and the placement: which device
 * runs which layer, with a binding table of the weights as each device holds them. */
#ifndef SLM_MODEL_H
#define SLM_MODEL_H

#include <pthread.h>

#include "arch.h"
#include "backend.h"
#include "gguf.h"
#include "model_config.h"
#include "weights.h"
#include "slm.h"
#include "slm_debug.h"

typedef struct slm_tokenizer slm_tokenizer;

/* Where the model runs: the devices, the device of each layer and of the output head, and the binding
 * table: bound[d] holds the weights device d runs with (bound[0] is the mapping). Read-only once loaded,
 * but for the GPU locks: contexts share the GPU instances and take turns on them (gpu_lock), while each
 * context runs its own CPU instance, opened with cpu_cfg (the model's devices[0] holds the mapping and
 * measures, but runs no context's ops). */
typedef struct slm_placement {
    slm_device *devices[SLM_MAX_DEVICES]; /* [0] is always the CPU */
    int n_devices;
    slm_device_config cpu_cfg;                 /* what each context's CPU instance is opened with */
    pthread_mutex_t gpu_lock[SLM_MAX_DEVICES]; /* [d >= 1]: held by the context using GPU d */
    bool locks_ready;                          /* gpu_lock initialized (destroyed with the placement) */
    int *layer_device;                         /* [n_layer] */
    int output_device;
    slm_buffer dev_weights[SLM_MAX_DEVICES]; /* the weights uploaded to each GPU */
    slm_weights bound[SLM_MAX_DEVICES];
    char text[512];         /* the placement, for -v and slm-bench */
    char note[512];         /* why the placement differs from the request, if it does */
    char threads_note[160]; /* why the CPU runs fewer threads than asked for, if it does */
    double predicted_tps;   /* the planner's decode prediction (0 on a single device) */
    /* weights_repack.h: the CPU's repacked copies, which bound[0] points at (with a layer table of its own
     * then), and which weights could not have one */
    slm_buffer repacked;
    bool own_host_layers;
    char repack_note[160];
} slm_placement;

struct slm_model {
    slm_gguf *gguf;
    slm_hparams hp;       /* as the file says; read-only */
    slm_model_config cfg; /* derived once from the file and the params; read-only */
    slm_params params;
    slm_debug_params dbg;     /* testing knobs (include/slm_debug.h) */
    uint32_t gpu_refused_ops; /* bit k: GPUs refuse op kind k (dbg.gpu_refuse_ops) */
    slm_tokenizer *tok;
    slm_buffer host_weights; /* the mapping, wrapped by the CPU device */
    slm_weights host;        /* every weight bound to the mapping */
    uint64_t *layer_bytes;   /* [n_layer] bytes of each layer's weights */
    uint64_t output_bytes;   /* the output head and its norm */
    slm_placement place;
    char name[128];      /* general.name */
    char *chat_template; /* tokenizer.chat_template, NUL-terminated, or NULL */
};

/* Binds every weight of m->gguf to m->host (m->hp and m->cfg set); unbind frees what bind made. */
slm_status slm_model_bind(slm_model *m, slm_error *err);
void slm_model_unbind(slm_model *m);

/* Loads from an already opened GGUF (a file or a synthetic model in memory); takes ownership of g. */
slm_status slm_model_load_gguf(slm_gguf *g, const slm_params *params, const slm_debug_params *dbg, slm_model **out,
                               slm_error *err);
const slm_tokenizer *slm_model_tokenizer(const slm_model *m);
const char *slm_model_chat_template(const slm_model *m); /* NULL when the file has none */

#endif
