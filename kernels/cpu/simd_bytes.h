/* Unaligned little reads from weight blocks, for the x86 SIMD kernel files (h2f needs F16C, which every
 * one of them is compiled with). */
#ifndef SLM_SIMD_BYTES_H
#define SLM_SIMD_BYTES_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

static inline __attribute__((always_inline)) uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The f16 at p as a float. */
static inline __attribute__((always_inline)) float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

#endif
