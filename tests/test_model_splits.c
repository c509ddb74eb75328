/* Layer splits between the CPU and a GPU backend on a real model: every split point 0..n_layer+1 (the
 * output head counts as the first GPU unit) gives logits equal to the all-CPU run within tolerance and the
 * same greedy tokens (N_GEN of them; with every layer on the GPU N_GEN_ALL, each step's logits compared
 * too); a device that fails its weight allocation (simulated by the loader, and for Vulkan for real inside
 * the backend) makes the model load with fewer layers and says why; ops a GPU refuses run on the CPU (the
 * graph routes them, with their activations copied there and back) with the same logits, and one that reads
 * the KV cache fails with a message that says so. Runs on every GPU device present (Vulkan, CUDA), on each
 * device opened twice, and on a Vulkan and a CUDA device together in both orders when both are present;
 * then, where the fixture is present, every split point of Gemma 3 270M again; exit 77 when there is no GPU. */
#include <math.h>

#include "backend.h"
#include "model.h"
#include "slm.h"
#include "test_util.h"

#define N_PROMPT 12
#define N_GEN 8      /* greedy steps compared at each split point */
#define N_GEN_ALL 64 /* ... and with every layer on the GPU (decode replayed through CUDA graphs there) */

typedef struct run_result {
    float *logits;     /* [N_PROMPT, n_vocab] */
    float *gen_logits; /* [n_gen, n_vocab]: the logits each greedy token was taken from */
    int n_gen;
    int32_t gen[N_GEN_ALL];
    char plan[512], note[512];
} run_result;

static bool run_model_refusing(const char *path, const char *device, const char *split, int ngl, size_t fault_limit,
                               const char *refuse, int n_vocab, int n_gen, run_result *r, slm_error *eval_err) {
    slm_params p = slm_params_default();
    p.n_threads = 2;
    p.n_ctx = 128; /* N_PROMPT + N_GEN_ALL */
    p.n_batch = 16;
    p.device = device;
    p.n_gpu_layers = ngl;
    p.tensor_split = split;
    /* GPU kernels multiply with f32 activations; the CPU's default 8-bit activation blocks alone move this
     * small model's logits by up to cosine 0.997 (tests/reference/test_e2e_logits.py), so every run here
     * keeps f32 activations on the CPU too and the splits compare like with like. */
    slm_debug_params dbg = {.f32_activations = true, .fault_alloc_limit = fault_limit, .gpu_refuse_ops = refuse};
    slm_model *m;
    slm_context *c;
    slm_error err = {{0}};
    if (slm_model_load_debug(path, &p, &dbg, &m, &err)) {
        fprintf(stderr, "load (%s, ngl %d): %s\n", device, ngl, err.msg);
        return false;
    }
    snprintf(r->plan, sizeof r->plan, "%s", m->place.text);
    snprintf(r->note, sizeof r->note, "%s", m->place.note);
    if (slm_context_create(m, &c, &err)) {
        fprintf(stderr, "context: %s\n", err.msg);
        slm_model_free(m);
        return false;
    }
    int32_t toks[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++) toks[i] = (int32_t)((i * 7919 + 13) % n_vocab);
    bool ok = slm_eval(c, toks, N_PROMPT, true, &err) == SLM_OK;
    if (ok) {
        r->logits = malloc((size_t)N_PROMPT * (size_t)n_vocab * sizeof(float));
        for (int i = 0; i < N_PROMPT; i++)
            memcpy(r->logits + (size_t)i * n_vocab, slm_logits(c, i), (size_t)n_vocab * sizeof(float));
    }
    r->n_gen = n_gen;
    r->gen_logits = ok ? malloc((size_t)n_gen * (size_t)n_vocab * sizeof(float)) : NULL;
    for (int g = 0; ok && g < n_gen; g++) {
        const float *lg = slm_logits(c, -1);
        memcpy(r->gen_logits + (size_t)g * n_vocab, lg, (size_t)n_vocab * sizeof(float));
        int32_t best = 0;
        for (int i = 1; i < n_vocab; i++)
            if (lg[i] > lg[best]) best = i;
        r->gen[g] = best;
        ok = slm_eval(c, &best, 1, false, &err) == SLM_OK;
    }
    if (!ok) fprintf(stderr, "eval (%s, ngl %d): %s\n", device, ngl, err.msg);
    if (eval_err) *eval_err = err;
    slm_context_free(c);
    slm_model_free(m);
    return ok;
}

static bool run_model(const char *path, const char *device, const char *split, int ngl, size_t fault_limit, int n_vocab,
                      int n_gen, run_result *r) {
    return run_model_refusing(path, device, split, ngl, fault_limit, NULL, n_vocab, n_gen, r, NULL);
}

static void free_result(run_result *r) {
    free(r->logits);
    free(r->gen_logits);
    r->logits = r->gen_logits = NULL;
}

/* Every prompt position's logits, and every greedy step's while the tokens agree, within cosine 0.999 of the
 * all-CPU run; the same r->n_gen greedy tokens (cpu ran at least as many); frees r. */
static void compare_with_cpu(const char *what, run_result *r, const run_result *cpu, int n_vocab) {
    double worst = 1;
    for (int t = 0; t < N_PROMPT; t++) {
        double c = slm_test_cosine(r->logits + (size_t)t * n_vocab, cpu->logits + (size_t)t * n_vocab, n_vocab);
        if (c < worst) worst = c;
    }
    int same = 0;
    while (same < r->n_gen && r->gen[same] == cpu->gen[same]) same++;
    double worst_gen = 1; /* step g's logits: same context on both while tokens 0..g-1 agree */
    for (int g = 0; g < r->n_gen && g <= same && g < cpu->n_gen; g++) {
        double c = slm_test_cosine(r->gen_logits + (size_t)g * n_vocab, cpu->gen_logits + (size_t)g * n_vocab, n_vocab);
        if (c < worst_gen) worst_gen = c;
    }
    printf("%s: min cosine %.6f (prompt) %.6f (steps), greedy %d/%d  [%s]\n", what, worst, worst_gen, same, r->n_gen,
           r->plan);
    CHECK(worst >= 0.999 && worst_gen >= 0.999, "%s: cosine %.6f / %.6f < 0.999", what, worst, worst_gen);
    CHECK(same == r->n_gen, "%s: greedy tokens differ from step %d", what, same);
    free_result(r);
}

/* SLM_TEST_DEVICES=cuda:0 limits the single-device runs (every split, allocation failures, refused ops,
 * the device twice) to the devices listed; pairs of two different backends still run when both are
 * present. The CUDA emulation build sets it: its Vulkan device is tested alone by the main build already. */
static bool device_listed(const char *name) {
    const char *list = getenv("SLM_TEST_DEVICES");
    if (!list || !*list) return true;
    char padded[256], key[40];
    snprintf(padded, sizeof padded, ",%s,", list);
    snprintf(key, sizeof key, ",%s,", name);
    return strstr(padded, key) != NULL;
}

static bool split_listed(const char *only, int ngl) {
    if (!only) return true;
    char key[16], list[256];
    snprintf(key, sizeof key, ",%d,", ngl);
    snprintf(list, sizeof list, ",%s,", only);
    return strstr(list, key) != NULL;
}

/* Gemma 3 270M, when the fixture is there: split points on each GPU device listed, against the CPU
 * (N_GEN_GEMMA greedy steps: its head of 262144 rows makes every step count). Every split point with
 * SLM_TEST_ALL_SPLITS=1 (slow: ~20 loads of the model per device, 5-14 minutes on lavapipe); else the
 * ends, the middle and both sides of the first local/global boundary (layer 5 is global). Its blocks add the per-head
 * and post norms, GeGLU and the scaled embedding, and alternate local and global layers. Returns the number
 * of devices tested. */
#define N_GEN_GEMMA 4
static int gemma_splits(const char *const *devices, int n_devices, const char *only) {
    char buf[1024];
    const char *path = slm_test_model("gemma-3-270m-q4_k_m.gguf", buf, sizeof buf);
    if (!path) {
        printf("gemma-3-270m-q4_k_m.gguf not found: its splits are skipped\n");
        return 0;
    }
    slm_params p = slm_params_default();
    slm_model *m;
    slm_error err;
    if (slm_model_load(path, &p, &m, &err)) {
        CHECK(false, "gemma: %s", err.msg);
        return 0;
    }
    int n_layer = m->hp.n_layer, n_vocab = m->hp.n_vocab, tested = 0;
    slm_model_free(m);
    run_result cpu = {0};
    if (!run_model(path, "cpu", NULL, 0, 0, n_vocab, N_GEN_GEMMA, &cpu)) {
        CHECK(false, "gemma on the cpu failed");
        return 0;
    }
    for (int d = 0; d < n_devices; d++) {
        slm_device *dev;
        if (!device_listed(devices[d]) || slm_device_open(devices[d], NULL, &dev, &err)) continue;
        slm_device_close(dev);
        tested++;
        for (int ngl = 0; ngl <= n_layer + 1; ngl++) {
            if (!split_listed(only, ngl)) continue;
            /* ngl counts layers from the top: the first k layers stay on the CPU at ngl = n_layer + 1 - k */
            int k = n_layer + 1 - ngl;
            const char *all = getenv("SLM_TEST_ALL_SPLITS");
            bool few = k <= 1 || k == 5 || k == 6 || k == n_layer / 2 || k >= n_layer;
            if (!only && !(all && *all == '1') && !few) continue;
            run_result r = {0};
            if (!run_model(path, devices[d], NULL, ngl, 0, n_vocab, N_GEN_GEMMA, &r)) {
                CHECK(false, "gemma %s ngl %d failed", devices[d], ngl);
                continue;
            }
            char what[64];
            snprintf(what, sizeof what, "gemma %s ngl %2d", devices[d], ngl);
            compare_with_cpu(what, &r, &cpu, n_vocab);
        }
    }
    free_result(&cpu);
    return tested;
}

int main(void) {
    char buf[1024];
    const char *path = slm_test_model("SmolLM2-135M-Instruct.Q4_1.gguf", buf, sizeof buf);
    if (!path) {
        printf("SKIP: SmolLM2 fixture not found (set SLM_TEST_MODELS)\n");
        return SLM_TEST_SKIP;
    }
    const char *devices[] = {"vulkan:0", "cuda:0"};
    int tested = 0;
    slm_params p = slm_params_default();
    slm_model *m;
    slm_error err;
    if (slm_model_load(path, &p, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int n_layer = m->hp.n_layer, n_vocab = m->hp.n_vocab;
    slm_model_free(m);
    run_result cpu = {0};
    if (!run_model(path, "cpu", NULL, 0, 0, n_vocab, N_GEN_ALL, &cpu)) return 1;
    const char *only = getenv("SLM_TEST_SPLITS"); /* e.g. "0,1,16,31" to shorten a debugging run */
    for (size_t d = 0; d < sizeof devices / sizeof devices[0]; d++) {
        slm_device *dev;
        if (slm_device_open(devices[d], NULL, &dev, &err)) {
            printf("%s: not present (%s)\n", devices[d], err.msg);
            continue;
        }
        printf("%s: %s\n", devices[d], dev->name);
        slm_device_close(dev);
        tested++;
        if (!device_listed(devices[d])) {
            printf("%s: alone and twice skipped (SLM_TEST_DEVICES)\n", devices[d]);
            continue;
        }
        for (int ngl = 0; ngl <= n_layer + 1; ngl++) {
            if (!split_listed(only, ngl)) continue;
            run_result r = {0};
            int n_gen = ngl == n_layer + 1 ? N_GEN_ALL : N_GEN;
            if (!run_model(path, devices[d], NULL, ngl, 0, n_vocab, n_gen, &r)) {
                CHECK(false, "%s ngl %d failed", devices[d], ngl);
                continue;
            }
            char what[64];
            snprintf(what, sizeof what, "%s ngl %2d", devices[d], ngl);
            compare_with_cpu(what, &r, &cpu, n_vocab);
        }
        /* simulated allocation failure: a 40 MiB limit holds the 30 MiB head and a few layers, not all; the load still works with
         * fewer GPU layers, says why, and stays correct */
        run_result r = {0};
        bool ok = run_model(path, devices[d], NULL, -1, 40u << 20, n_vocab, N_GEN, &r);
        CHECK(ok, "%s: load with a failing allocation must still work", devices[d]);
        if (ok) {
            printf("%s alloc failure: %s | %s\n", devices[d], r.note, r.plan);
            CHECK(strstr(r.note, "could not hold") != NULL, "the note must say why: '%s'", r.note);
            CHECK(slm_test_cosine(r.logits, cpu.logits, n_vocab) >= 0.999, "fallback logits differ");
            free_result(&r);
        }
        /* ops the GPU refuses run on the CPU between its splits, with the same results */
        run_result rr = {0};
        ok = run_model_refusing(path, devices[d], NULL, -1, 0, "rmsnorm,rope,swiglu,add", n_vocab, N_GEN, &rr, NULL);
        CHECK(ok, "%s: ops refused by the GPU must run on the CPU", devices[d]);
        if (ok) compare_with_cpu("refused rmsnorm/rope/swiglu/add routed to the cpu", &rr, &cpu, n_vocab);
        /* attention reads the KV cache, which stays on the layer's device: a clear error, not a wrong answer */
        slm_error e = {{0}};
        ok = run_model_refusing(path, devices[d], NULL, -1, 0, "attention", n_vocab, 1, &rr, &e);
        CHECK(!ok && strstr(e.msg, "cannot run op attention") && strstr(e.msg, "KV cache"),
              "refused attention must fail saying why: '%s'", e.msg);
        free_result(&rr);
        /* the same through the real allocation path: the Vulkan backend's own hook fails every device
         * allocation above 40 MiB inside vkAllocateMemory (the CUDA emulator: every cudaMalloc that would
         * take the device above 40 MiB), and the loader must re-plan the same way */
        const char *fail_env = !strncmp(devices[d], "vulkan", 6) ? "SLM_VK_FAIL_ALLOC_ABOVE" : NULL;
        const char *fail_at = "41943040";
#ifdef SLM_CUDA_EMU
        /* 80 MiB in all: the CUDA backend's own working memory for prompt batches (an f16 chunk of up to 32
         * MiB of a weight for its GEMMs, cuBLAS's 4 MiB workspace), which the plan counts, and the head's
         * weights leave no room for a layer under 40 MiB */
        if (!strncmp(devices[d], "cuda", 4)) {
            fail_env = "SLM_CUDA_EMU_FAIL_AFTER";
            fail_at = "83886080";
        }
#endif
        if (fail_env) {
            setenv(fail_env, fail_at, 1);
            run_result rv = {0};
            ok = run_model(path, devices[d], NULL, -1, 0, n_vocab, N_GEN, &rv);
            unsetenv(fail_env);
            /* the backend's own working memory (CUDA: GEMM f16 copies, attention partials, cuBLAS's workspace)
             * is reserved at load beside the weights, so the re-plan covers it and the prompt then runs */
            CHECK(ok, "%s: load with a failing device allocation must still work", devices[d]);
            if (ok) {
                printf("%s backend alloc failure: %s | %s\n", devices[d], rv.note, rv.plan);
                CHECK(strstr(rv.note, "could not hold") &&
                          (strstr(rv.note, "out of device memory") || strstr(rv.note, "out of memory")),
                      "the note must say why: '%s'", rv.note);
                const char *on = strstr(rv.plan, devices[d]);
                CHECK(on && !strstr(on, "no layers"), "some layers must still be on %s: '%s'", devices[d], rv.plan);
                compare_with_cpu(fail_env, &rv, &cpu, n_vocab);
            }
            /* the weights fit but a batch of 512 needs ~110 MiB of scratch: the loader's trial of the
             * context's allocations must catch it and place the model without that GPU, so that
             * slm_context_create then works */
            setenv(fail_env, fail_at, 1);
            slm_params p = slm_params_default();
            p.n_threads = 2;
            p.n_ctx = 512; /* the batch is capped by the context */
            p.n_batch = 512;
            p.device = devices[d];
            p.n_gpu_layers = -1;
            slm_model *m = NULL;
            slm_context *c = NULL;
            CHECK(slm_model_load(path, &p, &m, &err) == SLM_OK, "load, scratch too big: %s", err.msg);
            if (m) {
                printf("%s scratch too big: %s | %s\n", devices[d], m->place.note, m->place.text);
                CHECK(strstr(m->place.note, "KV cache and scratch") != NULL, "the note must say why: '%s'",
                      m->place.note);
                CHECK(slm_context_create(m, &c, &err) == SLM_OK, "context after the fallback: %s", err.msg);
                slm_context_free(c);
                slm_model_free(m);
            }
            unsetenv(fail_env);
        }
    }
    /* Two GPUs (--device A,B --tensor-split): the same device opened twice is two devices to slm, so the
     * activations cross GPU -> host -> GPU between the two ranges; and a Vulkan card beside a CUDA card, in
     * both orders, where the boundary activations leave one backend's memory for the other's. */
    const char *pairs[][2] = {
        {"vulkan:0", "vulkan:0"}, {"cuda:0", "cuda:0"}, {"vulkan:0", "cuda:0"}, {"cuda:0", "vulkan:0"}};
    for (size_t d = 0; d < sizeof pairs / sizeof pairs[0]; d++) {
        char pair[32];
        snprintf(pair, sizeof pair, "%s,%s", pairs[d][0], pairs[d][1]);
        bool present = true;
        for (int i = 0; i < 2; i++) {
            slm_device *dev;
            if (slm_device_open(pairs[d][i], NULL, &dev, &err)) {
                present = false;
                break;
            }
            slm_device_close(dev);
        }
        if (!present || (!strcmp(pairs[d][0], pairs[d][1]) && !device_listed(pairs[d][0]))) continue;
        printf("%s\n", pair);
        struct {
            int ngl;
            const char *split;
        } cases[] = {{-1, "1,2"}, {12, "1,1"}, {n_layer + 1, "3,0"}};
        bool mixed = strcmp(pairs[d][0], pairs[d][1]) != 0;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            if (mixed && i == 2) break; /* everything on the first device: a single-device run */
            run_result r = {0};
            bool ok = run_model(path, pair, cases[i].split, cases[i].ngl, 0, n_vocab, N_GEN, &r);
            CHECK(ok, "%s split %s ngl %d failed", pair, cases[i].split, cases[i].ngl);
            if (!ok) continue;
            char what[96];
            snprintf(what, sizeof what, "%s split %s ngl %d", pair, cases[i].split, cases[i].ngl);
            compare_with_cpu(what, &r, &cpu, n_vocab);
        }
    }
    free_result(&cpu);
    gemma_splits(devices, (int)(sizeof devices / sizeof devices[0]), only);
    if (!tested) {
        printf("SKIP: no GPU device (vulkan, cuda) present\n");
        return SLM_TEST_SKIP;
    }
    return slm_test_finish("test_model_splits");
}
