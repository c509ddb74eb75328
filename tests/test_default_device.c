/* Which devices a model lands on when no --device is named: the first hardware GPU, never a software
 * renderer (lavapipe), else the CPU alone; "cpu" always means the CPU alone. Runs on a tiny synthetic model
 * so it needs no fixture. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model.h"
#include "synth_gguf.h"
#include "test_util.h"

/* Spec of the device the default should pick ("cuda:0", ...), or "" when only software renderers or no
 * GPUs exist. Same order as the rule: CUDA before Vulkan, lowest index first. */
static void expected_default(char *spec, size_t len) {
    static const char *const kinds[] = {"cuda", "vulkan"};
    spec[0] = 0;
    for (size_t k = 0; k < 2; k++)
        for (const slm_backend_ops *const *b = slm_backends(); *b; b++) {
            if (strcmp((*b)->name, kinds[k])) continue;
            for (int i = 0; i < (*b)->count(); i++) {
                char s[32];
                snprintf(s, sizeof s, "%s:%d", kinds[k], i);
                slm_device *d = NULL;
                slm_error err;
                if (slm_device_open(s, NULL, &d, &err)) continue;
                bool hw = !d->software;
                if (hw) printf("hardware GPU present: %s (%s)\n", s, d->name);
                else printf("software renderer present: %s (%s)\n", s, d->name);
                slm_device_close(d);
                if (hw) {
                    snprintf(spec, len, "%s", s);
                    return;
                }
            }
        }
}

/* Loads a fresh copy of the synthetic model (the model takes the reader) on `device` and returns how many
 * devices it placed onto, with *software set when one of them is a software renderer; -1 if it failed. */
static int load_devices(const slm_synth_spec *s, const char *device, bool *software) {
    slm_error err = {{0}};
    slm_gguf *g = NULL;
    void *data = NULL;
    *software = false;
    if (slm_synth_open(s, 1, &g, &data, &err)) {
        CHECK(0, "synthetic model: %s", err.msg);
        return -1;
    }
    slm_params p = slm_params_default();
    p.n_threads = 1;
    p.n_ctx = 64;
    p.device = device;
    slm_model *m = NULL;
    int n = -1;
    if (slm_model_load_gguf(g, &p, NULL, &m, &err) == SLM_OK) {
        n = m->place.n_devices;
        for (int d = 0; d < n; d++) *software |= m->place.devices[d]->software;
        slm_model_free(m);
    } else {
        CHECK(0, "load with device '%s': %s", device ? device : "NULL", err.msg);
        slm_gguf_close(g);
    }
    free(data);
    return n;
}

int main(void) {
    slm_synth_spec s;
    slm_error err = {{0}};
    if (slm_synth_parse("custom:q4_0:n_layer=2:n_embd=256:n_head=2:n_ff=256", &s, &err)) {
        fprintf(stderr, "synthetic spec: %s\n", err.msg);
        return 1;
    }
    char want[32];
    expected_default(want, sizeof want);
    bool sw;
    const char *defaults[] = {NULL, "", "auto"};
    for (int i = 0; i < 3; i++) {
        const char *name = defaults[i] ? defaults[i] : "NULL";
        int n = load_devices(&s, defaults[i], &sw);
        if (want[0]) CHECK(n == 2, "default '%s' must add the hardware GPU %s (%d devices)", name, want, n);
        else CHECK(n == 1, "default '%s' with no hardware GPU must stay on the CPU (%d devices)", name, n);
        CHECK(!sw, "default '%s' picked a software renderer", name);
    }
    CHECK(load_devices(&s, "cpu", &sw) == 1, "\"cpu\" means the CPU alone");
    return slm_test_finish("test_default_device");
}
