/* Two CUDA devices: a small synthetic llama placed over "cuda:0,cuda:1" (every layer on the GPUs, and with
 * the first layer left on the CPU) gives the all-CPU run's logits for a 12-token prompt batch (above the 8
 * tokens of the mat-vec path: the GEMM path on both cards) and the same greedy tokens, each step's logits
 * compared too. Unlike test_model_splits' "cuda:0,cuda:0" (one card opened twice) the layers live in two
 * devices' memories, so the activations cross from one card to the other through the host, and every
 * stream, graph and cuBLAS handle must belong to the card it runs on. On the emulation build ctest sets
 * SLM_CUDA_EMU_DEVICES=2; exit 77 where fewer than two CUDA devices exist. */
#include <math.h>

#include "slm.h"
#include "slm_debug.h"
#include "synth.h"
#include "test_util.h"

#define N_PROMPT 12
#define N_GEN 8

typedef struct run_result {
    float *logits;     /* [N_PROMPT, n_vocab] */
    float *gen_logits; /* [N_GEN, n_vocab]: the logits each greedy token was taken from */
    int32_t gen[N_GEN];
    slm_plan_info plan;
} run_result;

static bool run(const void *gguf, size_t size, const char *device, int ngl, const char *split, int n_vocab,
                run_result *r) {
    slm_params p = slm_params_default();
    p.n_threads = 2;
    p.n_ctx = 64;
    p.n_batch = 16;
    p.device = device;
    p.n_gpu_layers = ngl;
    p.tensor_split = split;
    /* the GPU kernels multiply with f32 activations; so does the CPU here, so that like is compared with
     * like (its 8-bit activation blocks alone move logits by more than the tolerance below) */
    slm_debug_params dbg = {.f32_activations = true};
    slm_model *m;
    slm_context *c;
    slm_error err = {{0}};
    if (slm_model_load_memory_debug(gguf, size, &p, &dbg, &m, &err)) {
        fprintf(stderr, "load (%s, ngl %d): %s\n", device, ngl, err.msg);
        return false;
    }
    r->plan = slm_model_plan_info(m);
    if (slm_context_create(m, &c, &err)) {
        fprintf(stderr, "context (%s): %s\n", device, err.msg);
        slm_model_free(m);
        return false;
    }
    int32_t toks[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++) toks[i] = (int32_t)((i * 7919 + 13) % n_vocab);
    bool ok = slm_eval(c, toks, N_PROMPT, true, &err) == SLM_OK;
    r->logits = malloc((size_t)N_PROMPT * (size_t)n_vocab * sizeof(float));
    r->gen_logits = malloc((size_t)N_GEN * (size_t)n_vocab * sizeof(float));
    for (int i = 0; ok && i < N_PROMPT; i++)
        memcpy(r->logits + (size_t)i * n_vocab, slm_logits(c, i), (size_t)n_vocab * sizeof(float));
    for (int g = 0; ok && g < N_GEN; g++) {
        const float *lg = slm_logits(c, -1);
        memcpy(r->gen_logits + (size_t)g * n_vocab, lg, (size_t)n_vocab * sizeof(float));
        int32_t best = 0;
        for (int i = 1; i < n_vocab; i++)
            if (lg[i] > lg[best]) best = i;
        r->gen[g] = best;
        ok = slm_eval(c, &best, 1, false, &err) == SLM_OK;
    }
    if (!ok) fprintf(stderr, "eval (%s, ngl %d): %s\n", device, ngl, err.msg);
    slm_context_free(c);
    slm_model_free(m);
    return ok;
}

static void free_result(run_result *r) {
    free(r->logits);
    free(r->gen_logits);
    r->logits = r->gen_logits = NULL;
}

/* Both cards hold part of the model, and the logits and greedy tokens are the CPU's. */
static void compare(const char *what, const run_result *r, const run_result *cpu, int n_vocab) {
    printf("%s: %s\n", what, r->plan.text);
    CHECK(r->plan.n_devices == 3, "%s: %d devices in the plan, expected cpu + 2 GPUs", what, r->plan.n_devices);
    for (int d = 1; d < r->plan.n_devices && d < 3; d++) {
        char want[16];
        snprintf(want, sizeof want, "cuda:%d", d - 1);
        CHECK(strstr(r->plan.device[d].name, want) != NULL, "%s: device %d is '%s', expected %s", what, d,
              r->plan.device[d].name, want);
        CHECK(r->plan.device[d].n_layers > 0 || r->plan.device[d].output, "%s: %s holds nothing", what, want);
    }
    double worst = 1;
    for (int t = 0; t < N_PROMPT; t++) {
        double c = slm_test_cosine(r->logits + (size_t)t * n_vocab, cpu->logits + (size_t)t * n_vocab, n_vocab);
        if (c < worst) worst = c;
    }
    int same = 0;
    while (same < N_GEN && r->gen[same] == cpu->gen[same]) same++;
    double worst_gen = 1; /* step g's logits: the same context on both while tokens 0..g-1 agree */
    for (int g = 0; g <= same && g < N_GEN; g++) {
        double c = slm_test_cosine(r->gen_logits + (size_t)g * n_vocab, cpu->gen_logits + (size_t)g * n_vocab, n_vocab);
        if (c < worst_gen) worst_gen = c;
    }
    printf("%s: min cosine %.6f (prompt) %.6f (steps), greedy %d/%d\n", what, worst, worst_gen, same, N_GEN);
    CHECK(worst >= 0.999, "%s: prompt logits differ from the CPU's (cosine %.6f)", what, worst);
    CHECK(worst_gen >= 0.999, "%s: step logits differ from the CPU's (cosine %.6f)", what, worst_gen);
    CHECK(same == N_GEN, "%s: greedy tokens differ from step %d", what, same);
}

int main(void) {
    slm_backend_info backends[8];
    int nb = slm_backends_list(backends, 8), n_cuda = 0;
    for (int i = 0; i < nb && i < 8; i++)
        if (!strcmp(backends[i].name, "cuda")) n_cuda = backends[i].n_devices;
    if (n_cuda < 2) {
        printf("SKIP: %d CUDA device(s), two needed (the emulation build: SLM_CUDA_EMU_DEVICES=2)\n", n_cuda);
        return SLM_TEST_SKIP;
    }

    /* small enough for the emulator (head_dim 64, a few heads), deep enough to split three ways */
    slm_synth_spec spec;
    slm_error err = {{0}};
    void *gguf = NULL;
    size_t size = 0;
    if (slm_synth_parse("custom:q4_0:n_layer=4:n_embd=256:n_head=4:n_head_kv=2:n_ff=512:n_vocab=512:seed=15", &spec,
                        &err) ||
        slm_synth_build(&spec, 2, &gguf, &size, &err)) {
        fprintf(stderr, "synthetic model: %s\n", err.msg);
        return 1;
    }
    const int n_vocab = spec.n_vocab;

    run_result cpu = {0};
    bool ok = run(gguf, size, "cpu", 0, NULL, n_vocab, &cpu);
    CHECK(ok, "the all-CPU run failed");
    struct {
        int ngl;
        const char *split;
    } cases[] = {
        {SLM_NGL_ALL, "1,1"}, /* every layer and the output head on the two cards */
        {SLM_NGL_ALL, "1,3"}, /* uneven shares */
        {4, "1,1"},           /* layer 0 on the CPU: cpu -> cuda:0 -> cuda:1 */
    };
    for (size_t i = 0; ok && i < sizeof cases / sizeof cases[0]; i++) {
        run_result r = {0};
        char what[96];
        snprintf(what, sizeof what, "cuda:0,cuda:1 split %s ngl %d", cases[i].split, cases[i].ngl);
        if (run(gguf, size, "cuda:0,cuda:1", cases[i].ngl, cases[i].split, n_vocab, &r))
            compare(what, &r, &cpu, n_vocab);
        else CHECK(0, "%s failed", what);
        free_result(&r);
    }
    free_result(&cpu);
    free(gguf);
    return slm_test_finish("test_cuda_two_devices");
}
