/* gguf_write_sample: writes a small fixed GGUF file with support/gguf_write.c so that
 * tests/reference/test_gguf_python.py can read it back with the `gguf` package's GGUFReader.
 *
 *   gguf_write_sample OUT.gguf [ALIGNMENT] [VERSION]
 *
 * Contents (the Python test holds the same table):
 *   general.architecture = "llama", s.u32 = 4000000000, s.i32 = -7, s.f32 = 0.375, s.bool = true,
 *   s.str = "h\u00e9llo", s.u64 = 2^40 + 3, s.arr_str = ["<s>", "", "\u2581a"], s.arr_i32 = [1, -2, 3],
 *   s.arr_f32 = [0.5, -1.5], general.alignment = ALIGNMENT (u32, only when given);
 *   tensors: w.f32 f32 [5, 3] = 0.25 * i - 1; w.q8_0 q8_0 [64, 2] bytes (7 * i + 3) & 255;
 *            w.i32 i32 [4, 1, 2] = 1000 * i - 3. */
#include <stdio.h>
#include <stdlib.h>

#include "gguf_write.h"

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s OUT.gguf [ALIGNMENT] [VERSION]\n", argv[0]);
        return 2;
    }
    float wf[15];
    uint8_t wq[2 * 2 * 34];
    int32_t wi[8];
    for (int i = 0; i < 15; i++) wf[i] = 0.25f * (float)i - 1.0f;
    for (int i = 0; i < (int)sizeof wq; i++) wq[i] = (uint8_t)((7 * i + 3) & 255);
    for (int i = 0; i < 8; i++) wi[i] = 1000 * i - 3;

    slm_gguf_writer *w;
    slm_error err;
    if (slm_gguf_writer_create(&w, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (argc > 3) slm_gguf_writer_set_version(w, (uint32_t)strtoul(argv[3], NULL, 10));
    slm_gguf_writer_add_str(w, "general.architecture", "llama");
    if (argc > 2) slm_gguf_writer_add_u32(w, "general.alignment", (uint32_t)strtoul(argv[2], NULL, 10));
    slm_gguf_writer_add_u32(w, "s.u32", 4000000000u);
    slm_gguf_writer_add_i32(w, "s.i32", -7);
    slm_gguf_writer_add_f32(w, "s.f32", 0.375f);
    slm_gguf_writer_add_bool(w, "s.bool", true);
    slm_gguf_writer_add_str(w, "s.str", "h\xc3\xa9llo");
    slm_gguf_writer_add_u64(w, "s.u64", (1ull << 40) + 3);
    const char *strs[] = {"<s>", "",
                          "\xe2\x96\x81"
                          "a"};
    slm_gguf_writer_add_arr_str(w, "s.arr_str", strs, 3);
    slm_gguf_writer_add_arr_i32(w, "s.arr_i32", (const int32_t[]){1, -2, 3}, 3);
    slm_gguf_writer_add_arr_f32(w, "s.arr_f32", (const float[]){0.5f, -1.5f}, 2);
    slm_gguf_writer_add_tensor(w, "w.f32", SLM_F32, 2, (const int64_t[]){5, 3}, wf, 0);
    slm_gguf_writer_add_tensor(w, "w.q8_0", SLM_Q8_0, 2, (const int64_t[]){64, 2}, wq, 0);
    slm_gguf_writer_add_tensor(w, "w.i32", SLM_I32, 3, (const int64_t[]){4, 1, 2}, wi, 0);
    slm_status s = slm_gguf_writer_write_path(w, argv[1], &err);
    slm_gguf_writer_free(w);
    if (s) {
        fprintf(stderr, "gguf_write_sample: %s\n", err.msg);
        return 1;
    }
    return 0;
}
