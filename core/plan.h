/* The planner: a pure function from model shape, device facts and budgets to contiguous layer ranges per
 * device, with the decode speed its cost model predicts. Device 0 is always the host (CPU). */
#ifndef SLM_PLAN_H
#define SLM_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "slm.h"

#define SLM_PLAN_MAX_DEVICES 4

typedef struct slm_plan_model {
    int n_layer;
    const uint64_t *layer_bytes; /* [n_layer] weight bytes of each layer */
    uint64_t output_bytes;       /* output head + final norm */
    uint64_t embd_row_bytes;     /* one token's embedding row (always read on the host) */
    uint64_t kv_bytes_per_layer; /* KV cache of one layer for the whole context */
    uint64_t scratch_bytes;      /* activations for the largest batch, on every device that runs a split */
    uint64_t logits_bytes;       /* logits buffer, on the device that runs the output head */
    uint64_t boundary_bytes;     /* residual stream of one token crossing a device boundary */
    /* The backend's own working memory on each GPU (its scratch, a library's workspace), counted once on
     * every GPU that runs a split: [d][0] when d runs layers only, [d][1] when it also runs the head.
     * [0] (the host) is ignored. */
    uint64_t work_bytes[SLM_PLAN_MAX_DEVICES][2];
} slm_plan_model;

typedef struct slm_plan_device {
    uint64_t budget;       /* usable bytes on this device (device 0, the host: ignored) */
    double bandwidth;      /* measured peak read bandwidth, bytes/s */
    double link_bandwidth; /* host <-> device copies, bytes/s (device 0: unused) */
    double link_latency;   /* seconds per boundary copy (device 0: unused) */
} slm_plan_device;

typedef struct slm_plan_request {
    int n_gpu_layers;          /* SLM_NGL_ALL, SLM_NGL_AUTO or N >= 0 units: the output head first, then
                                    layers from the last one down */
    const float *tensor_split; /* [n_devices - 1] shares of the GPU layers, NULL: all on device 1 */
    double margin;             /* auto: fraction of each budget kept free (e.g. 0.05) */
} slm_plan_request;

typedef struct slm_plan {
    int n_devices;
    int n_layer;
    int layer_device[1024]; /* device of each layer */
    int output_device;
    int n_gpu_units;                      /* layers on GPUs + 1 if the output head is on a GPU */
    uint64_t bytes[SLM_PLAN_MAX_DEVICES]; /* weights + KV + scratch + work placed on each device */
    double predicted_tps;                 /* decode tokens/s from the cost model */
    int n_boundaries;                     /* device changes per token */
} slm_plan;

/* Fails with SLM_ERR_INVALID_ARG for impossible inputs and SLM_ERR_NOMEM when a manual placement does not
 * fit a budget (the message says which device and by how much). */
slm_status slm_plan_make(const slm_plan_model *m, const slm_plan_device *devs, int n_devices,
                         const slm_plan_request *req, slm_plan *out, slm_error *err);
/* The cost model alone, for a given placement: seconds per decoded token at context position n_past. */
double slm_plan_decode_seconds(const slm_plan_model *m, const slm_plan_device *devs, const slm_plan *p);
/* "cpu: layers 0-17 (1.2 GiB) | gpu1: layers 18-29 + output (0.8 GiB) | predicted 41.2 tok/s" */
void slm_plan_describe(const slm_plan *p, const char *const *device_names, char *buf, size_t len);

#endif
