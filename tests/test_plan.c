/* The planner as a pure function: placement rules, budgets never exceeded, auto-fit layer counts computed
 * by hand, two GPUs, KV size changes, and the cost model's prediction. */
#include "plan.h"
#include "test_util.h"

#define MiB (1024ull * 1024ull)

static slm_plan_model model(int n_layer, uint64_t *lb, uint64_t per_layer, uint64_t kv) {
    for (int i = 0; i < n_layer; i++) lb[i] = per_layer;
    slm_plan_model m = {.n_layer = n_layer,
                        .layer_bytes = lb,
                        .output_bytes = 100 * MiB,
                        .embd_row_bytes = 4096,
                        .kv_bytes_per_layer = kv,
                        .scratch_bytes = 10 * MiB,
                        .logits_bytes = 1 * MiB,
                        .boundary_bytes = 4 * 2048};
    return m;
}

static void check_budget(const slm_plan *p, const slm_plan_device *d, double margin, const char *what) {
    for (int i = 1; i < p->n_devices; i++)
        CHECK((double)p->bytes[i] <= (double)d[i].budget * (1 - margin), "%s: device %d over budget (%llu > %llu)",
              what, i, (unsigned long long)p->bytes[i], (unsigned long long)d[i].budget);
}

int main(void) {
    uint64_t lb[128];
    slm_plan_model m = model(32, lb, 200 * MiB, 16 * MiB);
    slm_plan_device dev[3] = {{.bandwidth = 50e9},
                              {.budget = 8192 * MiB, .bandwidth = 500e9, .link_bandwidth = 10e9, .link_latency = 1e-5},
                              {.budget = 4096 * MiB, .bandwidth = 400e9, .link_bandwidth = 10e9}};
    slm_plan p;
    slm_error err;

    /* CPU only: everything on device 0 */
    slm_plan_request r = {.n_gpu_layers = SLM_NGL_ALL, .margin = 0.05};
    CHECK(slm_plan_make(&m, dev, 1, &r, &p, &err) == SLM_OK, "%s", err.msg);
    CHECK(p.n_gpu_units == 0 && p.output_device == 0, "cpu only");
    for (int i = 0; i < 32; i++) CHECK(p.layer_device[i] == 0, "layer %d on cpu", i);
    /* cpu-only prediction: (32*200 MiB + 100 MiB + 4096) / 50e9 */
    double want = (32.0 * 200 * MiB + 100.0 * MiB + 4096) / 50e9;
    CHECK(fabs(1.0 / p.predicted_tps - want) < 1e-9, "cpu prediction %g vs %g", 1.0 / p.predicted_tps, want);

    /* -ngl 1: only the output head on the GPU */
    r.n_gpu_layers = 1;
    CHECK(slm_plan_make(&m, dev, 2, &r, &p, &err) == SLM_OK, "%s", err.msg);
    CHECK(p.output_device == 1 && p.n_gpu_units == 1, "ngl 1 puts the head on the gpu");
    for (int i = 0; i < 32; i++) CHECK(p.layer_device[i] == 0, "ngl 1: layer %d stays on cpu", i);

    /* -ngl 5: head + last 4 layers, contiguous */
    r.n_gpu_layers = 5;
    CHECK(slm_plan_make(&m, dev, 2, &r, &p, &err) == SLM_OK, "%s", err.msg);
    for (int i = 0; i < 32; i++) CHECK(p.layer_device[i] == (i >= 28), "ngl 5: layer %d", i);
    CHECK(p.bytes[1] == 4 * (200 + 16) * MiB + 100 * MiB + 1 * MiB + 10 * MiB, "ngl 5 bytes %llu",
          (unsigned long long)p.bytes[1]);
    CHECK(p.n_boundaries == 2, "cpu->gpu and gpu->host: %d", p.n_boundaries);

    /* auto under a 2 GiB budget with 5% margin: usable 1945.6 MiB; head costs 100+1+10 = 111 MiB,
     * each layer 216 MiB: floor((1945.6 - 111) / 216) = 8 layers -> 9 units */
    dev[1].budget = 2048 * MiB;
    r.n_gpu_layers = SLM_NGL_AUTO;
    CHECK(slm_plan_make(&m, dev, 2, &r, &p, &err) == SLM_OK, "%s", err.msg);
    CHECK(p.n_gpu_units == 9, "auto fit under 2 GiB: %d units, want 9", p.n_gpu_units);
    check_budget(&p, dev, 0.05, "auto 2GiB");

    /* a bigger KV cache (longer context) fits fewer layers: 216 -> 264 MiB per layer: 6 layers */
    m = model(32, lb, 200 * MiB, 64 * MiB);
    CHECK(slm_plan_make(&m, dev, 2, &r, &p, &err) == SLM_OK, "%s", err.msg);
    CHECK(p.n_gpu_units == 7, "auto with big KV: %d units, want 7", p.n_gpu_units);
    check_budget(&p, dev, 0.05, "auto big kv");

    /* manual placement over budget fails with a message, never exceeds */
    r.n_gpu_layers = SLM_NGL_ALL;
    CHECK(slm_plan_make(&m, dev, 2, &r, &p, &err) == SLM_ERR_NOMEM, "ngl all over budget must fail");
    CHECK(strstr(err.msg, "budget") != NULL, "message names the budget: %s", err.msg);

    /* budgets from tiny to huge: auto never exceeds, and the unit count grows monotonically */
    m = model(40, lb, 77 * MiB + 12345, 3 * MiB + 17);
    int prev = -1;
    r.n_gpu_layers = SLM_NGL_AUTO;
    for (uint64_t b = 0; b <= 8192 * MiB; b += 97 * MiB) {
        dev[1].budget = b;
        CHECK(slm_plan_make(&m, dev, 2, &r, &p, &err) == SLM_OK, "%s", err.msg);
        check_budget(&p, dev, 0.05, "sweep");
        CHECK(p.n_gpu_units >= prev, "units must not shrink with a bigger budget");
        prev = p.n_gpu_units;
        /* GPU layers are always the last ones, contiguous */
        for (int i = 1; i < 40; i++) CHECK(p.layer_device[i] >= p.layer_device[i - 1], "contiguous at %d", i);
    }
    CHECK(prev == 41, "a huge budget takes every layer and the head (%d)", prev);

    /* uneven layers (a Q4_K_M file mixes Q4_K and Q6_K layers; first and last layers differ): auto takes
     * exactly the most units whose bytes, summed here by hand, fit the budget less the margin */
    {
        uint64_t odd[29];
        for (int i = 0; i < 29; i++) odd[i] = (i % 3 == 0 ? 61 : 47) * MiB + 4093u * (uint64_t)(i + 1);
        slm_plan_model om = model(29, lb, 0, 5 * MiB + 3);
        om.layer_bytes = odd;
        for (uint64_t b = 50 * MiB; b <= 2600 * MiB; b += 37 * MiB + 11) {
            dev[1].budget = b;
            int want = 0;
            for (int u = 1; u <= 30; u++) {
                uint64_t need = om.output_bytes + om.logits_bytes + om.scratch_bytes;
                for (int i = 29 - (u - 1); i < 29; i++) need += odd[i] + om.kv_bytes_per_layer;
                if ((double)need <= (double)b * 0.95) want = u;
            }
            r.n_gpu_layers = SLM_NGL_AUTO;
            CHECK(slm_plan_make(&om, dev, 2, &r, &p, &err) == SLM_OK, "%s", err.msg);
            CHECK(p.n_gpu_units == want, "uneven layers, budget %llu: %d units, want %d", (unsigned long long)b,
                  p.n_gpu_units, want);
            check_budget(&p, dev, 0.05, "uneven");
        }
    }

    /* The backend's own working memory: counted once per GPU that runs a split, the larger figure on the
     * device with the head (e.g. CUDA's GEMM chunk of the vocabulary-sized weight), never on the host; auto
     * leaves room for it, and a manual placement it does not fit fails. */
    {
        slm_plan_model wm = model(32, lb, 200 * MiB, 16 * MiB);
        wm.work_bytes[0][0] = wm.work_bytes[0][1] = 999 * MiB; /* the host's: never counted */
        wm.work_bytes[1][0] = 5 * MiB;
        wm.work_bytes[1][1] = 37 * MiB;
        wm.work_bytes[2][0] = 3 * MiB;
        wm.work_bytes[2][1] = 33 * MiB;
        dev[1].budget = 8192 * MiB;
        r.n_gpu_layers = 5;
        CHECK(slm_plan_make(&wm, dev, 2, &r, &p, &err) == SLM_OK, "%s", err.msg);
        CHECK(p.bytes[1] == 4 * (200 + 16) * MiB + 100 * MiB + 1 * MiB + 10 * MiB + 37 * MiB,
              "work on the head's device: %llu", (unsigned long long)p.bytes[1]);
        CHECK(p.bytes[0] == 28 * (200 + 16) * MiB + 10 * MiB, "no work counted on the host: %llu",
              (unsigned long long)p.bytes[0]);
        /* two GPUs, the head on the second: the first counts its layers-only figure */
        float even[2] = {1, 1};
        r.tensor_split = even;
        r.n_gpu_layers = 9;
        dev[2].budget = 8192 * MiB;
        CHECK(slm_plan_make(&wm, dev, 3, &r, &p, &err) == SLM_OK, "%s", err.msg);
        CHECK(p.output_device == 2, "head on the second gpu");
        CHECK(p.bytes[1] == 4 * (200 + 16) * MiB + 10 * MiB + 5 * MiB &&
                  p.bytes[2] == 4 * (200 + 16) * MiB + 100 * MiB + 1 * MiB + 10 * MiB + 33 * MiB,
              "work per gpu: %llu, %llu", (unsigned long long)p.bytes[1], (unsigned long long)p.bytes[2]);
        r.tensor_split = NULL;
        dev[2].budget = 4096 * MiB;
        /* auto with 1859 MiB usable after the 5% margin: the head costs 111 MiB and each layer 216, so 8 layers
         * (1839 MiB) fit without the work; with its 37 MiB (1876) only 7 do */
        dev[1].budget = (uint64_t)((111 + 8 * 216 + 20) * MiB / 0.95) + 1;
        r.n_gpu_layers = SLM_NGL_AUTO;
        slm_plan_model none = model(32, lb, 200 * MiB, 16 * MiB);
        CHECK(slm_plan_make(&none, dev, 2, &r, &p, &err) == SLM_OK && p.n_gpu_units == 9,
              "without work: 9 units, got %d", p.n_gpu_units);
        CHECK(slm_plan_make(&wm, dev, 2, &r, &p, &err) == SLM_OK && p.n_gpu_units == 8,
              "the work takes a layer's room: 8 units, got %d", p.n_gpu_units);
        check_budget(&p, dev, 0.05, "auto with work");
        /* a manual placement that fits only without the work fails, naming the device */
        dev[1].budget = (111 + 8 * 216 + 20) * MiB;
        r.n_gpu_layers = 9;
        CHECK(slm_plan_make(&none, dev, 2, &r, &p, &err) == SLM_OK, "fits without work: %s", err.msg);
        CHECK(slm_plan_make(&wm, dev, 2, &r, &p, &err) == SLM_ERR_NOMEM && strstr(err.msg, "device 1"),
              "does not fit with the work: %s", err.msg);
        dev[1].budget = 8192 * MiB;
    }

    /* two GPUs split 3:1 */
    m = model(32, lb, 100 * MiB, 8 * MiB);
    dev[1].budget = 8192 * MiB;
    float split[2] = {3, 1};
    r.n_gpu_layers = SLM_NGL_ALL;
    r.tensor_split = split;
    CHECK(slm_plan_make(&m, dev, 3, &r, &p, &err) == SLM_OK, "%s", err.msg);
    int on1 = 0, on2 = 0;
    for (int i = 0; i < 32; i++) {
        on1 += p.layer_device[i] == 1;
        on2 += p.layer_device[i] == 2;
    }
    CHECK(on1 == 24 && on2 == 8, "3:1 split gives 24/8, got %d/%d", on1, on2);
    CHECK(p.output_device == 2, "head goes with the last layers");
    check_budget(&p, dev, 0, "two gpus");

    /* auto over two GPUs of different sizes: neither budget is ever exceeded, and a bigger second card
     * never fits fewer units */
    r.n_gpu_layers = SLM_NGL_AUTO;
    dev[1].budget = 1500 * MiB;
    prev = -1;
    for (uint64_t b = 0; b <= 6000 * MiB; b += 311 * MiB) {
        dev[2].budget = b;
        CHECK(slm_plan_make(&m, dev, 3, &r, &p, &err) == SLM_OK, "%s", err.msg);
        check_budget(&p, dev, 0.05, "auto two gpus");
        CHECK(p.n_gpu_units >= prev, "two gpus: units must not shrink with a bigger second budget");
        prev = p.n_gpu_units;
    }
    dev[1].budget = 8192 * MiB;
    dev[2].budget = 4096 * MiB;
    r.n_gpu_layers = SLM_NGL_ALL;

    /* the cost model: full offload is faster than none for a faster GPU */
    r.tensor_split = NULL;
    r.n_gpu_layers = 0;
    slm_plan_make(&m, dev, 2, &r, &p, &err);
    double cpu_tps = p.predicted_tps;
    r.n_gpu_layers = SLM_NGL_ALL;
    slm_plan_make(&m, dev, 2, &r, &p, &err);
    CHECK(p.predicted_tps > 5 * cpu_tps, "gpu prediction %g vs cpu %g", p.predicted_tps, cpu_tps);

    /* bad input */
    r.n_gpu_layers = -7;
    CHECK(slm_plan_make(&m, dev, 2, &r, &p, &err) == SLM_ERR_INVALID_ARG, "bad ngl must fail");
    m.n_layer = 0;
    r.n_gpu_layers = 0;
    CHECK(slm_plan_make(&m, dev, 2, &r, &p, &err) == SLM_ERR_INVALID_ARG, "no layers must fail");

    char text[512];
    const char *names[] = {"cpu", "gpu"};
    m = model(4, lb, 1 * MiB, 0);
    r.n_gpu_layers = 2;
    slm_plan_make(&m, dev, 2, &r, &p, &err);
    slm_plan_describe(&p, names, text, sizeof text);
    CHECK(strstr(text, "cpu: layers 0-2") && strstr(text, "gpu: layers 3-3 + output"), "describe: %s", text);
    return slm_test_finish("test_plan");
}
