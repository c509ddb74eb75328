/* Execution of one op by one thread of the CPU pool (each thread does its share, then the caller
 * synchronises). */
#ifndef SLM_CPU_OPS_H
#define SLM_CPU_OPS_H

#include "backend.h"
#include "cpu_kernels.h"
#include "thread_pool.h"

typedef struct slm_cpu_exec {
    const slm_cpu_kernels *k;
    slm_pool *pool;
    uint8_t *work; /* shared scratch: quantized activations, then per-thread attention scores */
    size_t work_size;
} slm_cpu_exec;

/* Scratch bytes op needs with nth threads. */
size_t slm_cpu_op_work_size(const slm_cpu_exec *e, const slm_op *op, int nth);
/* The CPU's own limits on an op that satisfies slm_op_check. */
bool slm_cpu_op_supported(const slm_op *op);
/* Runs thread ith's share of op; may call slm_pool_barrier internally (all threads call this). */
void slm_cpu_op_run(const slm_cpu_exec *e, const slm_op *op, int ith, int nth);

#endif
