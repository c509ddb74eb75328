/* Build-time check that shaders/quant_blocks.glsl gives every quantized type the elements and bytes per
 * block of kernels/quant_blocks.h (the GLSL cannot include the C header). Run by cmake/vulkan.cmake before
 * the shaders compile; exits non-zero with the mismatch on stderr. Usage: check_quant_blocks FILE.glsl */
#include <stdio.h>
#include <string.h>

#include "quant_blocks.h"

static const struct {
    const char *wtype;
    unsigned elems, bytes;
} k_want[] = {
    {"Q4_0", SLM_QK, SLM_Q4_0_BYTES},   {"Q4_1", SLM_QK, SLM_Q4_1_BYTES},   {"Q5_0", SLM_QK, SLM_Q5_0_BYTES},
    {"Q5_1", SLM_QK, SLM_Q5_1_BYTES},   {"Q8_0", SLM_QK, SLM_Q8_0_BYTES},   {"Q4_K", SLM_QK_K, SLM_Q4_K_BYTES},
    {"Q5_K", SLM_QK_K, SLM_Q5_K_BYTES}, {"Q6_K", SLM_QK_K, SLM_Q6_K_BYTES},
};

int main(int argc, char **argv) {
    FILE *f = argc == 2 ? fopen(argv[1], "r") : NULL;
    if (!f) {
        fprintf(stderr, "check_quant_blocks: cannot read %s\n", argc == 2 ? argv[1] : "(no file given)");
        return 1;
    }
    unsigned got_elems[8] = {0}, got_bytes[8] = {0};
    int cur = -1, bad = 0;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        const char *d = strstr(line, "defined(WTYPE_");
        if (d && (!strncmp(line, "#if ", 4) || !strncmp(line, "#elif ", 6))) {
            cur = -1;
            for (int i = 0; i < 8; i++)
                if (!strncmp(d + 14, k_want[i].wtype, 4) && d[18] == ')') cur = i;
            continue;
        }
        unsigned v;
        if (cur >= 0 && sscanf(line, "#define SLM_BLOCK_ELEMS %uu", &v) == 1) got_elems[cur] = v;
        if (cur >= 0 && sscanf(line, "#define SLM_BLOCK_BYTES %uu", &v) == 1) got_bytes[cur] = v;
    }
    fclose(f);
    for (int i = 0; i < 8; i++) {
        if (got_elems[i] == k_want[i].elems && got_bytes[i] == k_want[i].bytes) continue;
        fprintf(stderr, "%s: WTYPE_%s has %u elements / %u bytes per block, kernels/quant_blocks.h says %u / %u\n",
                argv[1], k_want[i].wtype, got_elems[i], got_bytes[i], k_want[i].elems, k_want[i].bytes);
        bad = 1;
    }
    return bad;
}
