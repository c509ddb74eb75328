/* quant_tool: exposes the reference quantizer and dequantizer on files so that the Python reference
 * test (tests/reference/test_quant_numpy.py) can compare them with the numpy code of the `gguf` package.
 *
 *   quant_tool dequant  TYPE IN OUT   IN: raw blocks of TYPE  -> OUT: float32 (little-endian host order)
 *   quant_tool quantize TYPE IN OUT   IN: float32             -> OUT: raw blocks of TYPE
 *   quant_tool dot      TYPE W X      prints slm_ref_dot_row of the row W (raw blocks) with X (float32)
 *
 * TYPE is a dtype name ("q4_k") or a GGUF type id ("12"). Element counts follow from the file sizes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant_ref.h"
#include "types.h"

static int parse_type(const char *s, slm_dtype *t) {
    char *end;
    long id = strtol(s, &end, 10);
    if (*s && !*end) {
        if (!slm_dtype_known((uint32_t)id)) return -1;
        *t = (slm_dtype)id;
        return 0;
    }
    for (uint32_t i = 0; i < SLM_DTYPE_COUNT; i++) {
        if (slm_dtype_known(i) && strcmp(slm_dtype_name(i), s) == 0) {
            *t = (slm_dtype)i;
            return 0;
        }
    }
    return -1;
}

static void *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "quant_tool: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
        fprintf(stderr, "quant_tool: cannot read %s\n", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int write_file(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len) {
        fprintf(stderr, "quant_tool: cannot write %s\n", path);
        if (f) fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: quant_tool dequant|quantize|dot TYPE IN OUT\n");
        return 2;
    }
    slm_dtype t;
    if (parse_type(argv[2], &t) != 0) {
        fprintf(stderr, "quant_tool: unknown type %s\n", argv[2]);
        return 2;
    }
    const slm_dtype_info *ti = slm_dtype_get((uint32_t)t);
    size_t len;
    void *in = read_file(argv[3], &len);
    if (!in) return 1;
    int rc = 0;
    if (strcmp(argv[1], "dequant") == 0) {
        if (len % (size_t)ti->block_bytes) {
            fprintf(stderr, "quant_tool: %zu bytes is not a whole number of %s blocks\n", len, ti->name);
            rc = 1;
        } else {
            int64_t n = (int64_t)(len / (size_t)ti->block_bytes) * ti->block_elems;
            float *out = malloc((size_t)n * 4 + 1);
            if (!out) rc = 1;
            else {
                slm_ref_dequant_row(t, in, out, n);
                rc = write_file(argv[4], out, (size_t)n * 4) ? 1 : 0;
            }
            free(out);
        }
    } else if (strcmp(argv[1], "quantize") == 0) {
        int64_t n = (int64_t)(len / 4);
        if (len % 4 || n % ti->block_elems) {
            fprintf(stderr, "quant_tool: %zu bytes is not a whole number of %d-float rows\n", len, ti->block_elems);
            rc = 1;
        } else {
            size_t bytes = slm_dtype_row_bytes(t, n);
            void *out = malloc(bytes + 1);
            if (!out) rc = 1;
            else {
                slm_ref_quantize_row(t, in, out, n);
                rc = write_file(argv[4], out, bytes) ? 1 : 0;
            }
            free(out);
        }
    } else if (strcmp(argv[1], "dot") == 0) {
        size_t xlen;
        float *x = read_file(argv[4], &xlen);
        int64_t n = x ? (int64_t)(xlen / 4) : 0;
        if (!x || slm_dtype_row_bytes(t, n) != len || n == 0) {
            fprintf(stderr, "quant_tool: weight row and activations do not match\n");
            rc = 1;
        } else {
            printf("%.9g\n", (double)slm_ref_dot_row(t, in, x, n));
        }
        free(x);
    } else {
        fprintf(stderr, "quant_tool: unknown command %s\n", argv[1]);
        rc = 2;
    }
    free(in);
    return rc;
}
