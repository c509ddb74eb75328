/* kernels/ref quant formats and core/types.c half conversions: hand-decoded blocks of every type,
 * quantize -> dequantize error bounds, dot_row against the dequantized row, f16/bf16 edge cases.
 * (The bit-for-bit comparison with an independent decoder is tests/reference/test_quant_numpy.py.) */
#include "quant_ref.h"
#include "test_util.h"
#include "types.h"

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Compares a decoded row with expected values, exactly: every expected value below is a small dyadic
 * number that float represents without rounding. */
static void check_row(const char *what, const float *got, const float *want, int n) {
    for (int i = 0; i < n; i++) CHECK(got[i] == want[i], "%s element %d: got %.9g want %.9g", what, i, got[i], want[i]);
}

static void test_half_conversions(void) {
    /* f16 -> f32 */
    CHECK(slm_f16_to_f32(0x0000) == 0.0f && !signbit(slm_f16_to_f32(0x0000)), "+0");
    CHECK(slm_f16_to_f32(0x8000) == 0.0f && signbit(slm_f16_to_f32(0x8000)), "-0 keeps its sign");
    CHECK(slm_f16_to_f32(0x3c00) == 1.0f, "1.0");
    CHECK(slm_f16_to_f32(0xc000) == -2.0f, "-2.0");
    CHECK(slm_f16_to_f32(0x3555) == 0x155 / 1024.0f * 0.25f + 0.25f, "0x3555 = (1 + 0x155/1024) / 4");
    CHECK(slm_f16_to_f32(0x7bff) == 65504.0f, "largest finite half");
    CHECK(slm_f16_to_f32(0x0001) == ldexpf(1, -24), "smallest subnormal 2^-24");
    CHECK(slm_f16_to_f32(0x03ff) == ldexpf(1023, -24), "largest subnormal 1023 * 2^-24");
    CHECK(slm_f16_to_f32(0x0400) == ldexpf(1, -14), "smallest normal 2^-14");
    CHECK(slm_f16_to_f32(0x8001) == -ldexpf(1, -24), "negative subnormal");
    CHECK(isinf(slm_f16_to_f32(0x7c00)) && slm_f16_to_f32(0x7c00) > 0, "+inf");
    CHECK(isinf(slm_f16_to_f32(0xfc00)) && slm_f16_to_f32(0xfc00) < 0, "-inf");
    CHECK(isnan(slm_f16_to_f32(0x7e00)) && isnan(slm_f16_to_f32(0x7c01)), "NaN");

    /* f32 -> f16, round to nearest even */
    CHECK(slm_f32_to_f16(1.0f) == 0x3c00, "1.0");
    CHECK(slm_f32_to_f16(-0.0f) == 0x8000, "-0");
    CHECK(slm_f32_to_f16(65504.0f) == 0x7bff, "65504");
    CHECK(slm_f32_to_f16(65519.0f) == 0x7bff, "65519 rounds down to 65504");
    CHECK(slm_f32_to_f16(65520.0f) == 0x7c00, "65520 is the tie between 65504 and 65536: even = inf");
    CHECK(slm_f32_to_f16(1e6f) == 0x7c00 && slm_f32_to_f16(-1e6f) == 0xfc00, "overflow to inf");
    CHECK(slm_f32_to_f16(INFINITY) == 0x7c00, "inf");
    uint16_t hn = slm_f32_to_f16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0, "NaN stays NaN: %04x", hn);
    CHECK(slm_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00, "tie 1+2^-11 rounds to even 1.0");
    CHECK(slm_f32_to_f16(1.0f + ldexpf(3, -11)) == 0x3c02, "tie 1+3*2^-11 rounds to even 0x3c02");
    CHECK(slm_f32_to_f16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)) == 0x3c01, "just above a tie rounds up");
    CHECK(slm_f32_to_f16(ldexpf(1, -24)) == 0x0001, "2^-24 -> smallest subnormal");
    CHECK(slm_f32_to_f16(ldexpf(1, -25)) == 0x0000, "2^-25 is a tie between 0 and 2^-24: even = 0");
    CHECK(slm_f32_to_f16(ldexpf(3, -26)) == 0x0001, "1.5 * 2^-25 rounds up to 2^-24");
    CHECK(slm_f32_to_f16(ldexpf(3, -25)) == 0x0002, "3 * 2^-25 is a tie between 1 and 2 ulps: even = 2");
    CHECK(slm_f32_to_f16(ldexpf(1, -14) - ldexpf(1, -24)) == 0x03ff, "largest subnormal");
    CHECK(slm_f32_to_f16(ldexpf(1, -14) - ldexpf(1, -26)) == 0x0400, "rounds up across into the normals");
    CHECK(slm_f32_to_f16(ldexpf(1, -30)) == 0x0000, "underflow to 0");
    /* Every finite half survives the round trip; NaNs stay NaN. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = slm_f16_to_f32((uint16_t)h);
        uint16_t back = slm_f32_to_f16(f);
        if (isnan(f) ? !((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) : back != h) bad++;
    }
    CHECK(bad == 0, "%d halves do not survive f16 -> f32 -> f16", bad);

    /* bf16: decoding is a shift; encoding (through the BF16 quantizer) rounds to nearest even. */
    CHECK(slm_bf16_to_f32(0x3f80) == 1.0f, "bf16 1.0");
    CHECK(slm_bf16_to_f32(0xc040) == -3.0f, "bf16 -3.0");
    CHECK(isinf(slm_bf16_to_f32(0x7f80)), "bf16 inf");
    CHECK(slm_bf16_to_f32(0x0001) == ldexpf(1, -133), "bf16 subnormal 2^-133");
    float in[4] = {1.0f + ldexpf(1, -8), 1.0f + ldexpf(3, -8), -(1.0f + ldexpf(1, -8) + ldexpf(1, -20)), NAN};
    uint16_t out[4];
    slm_ref_quantize_row(SLM_BF16, in, out, 4);
    CHECK(out[0] == 0x3f80, "tie 1+2^-8 -> even 1.0: %04x", out[0]);
    CHECK(out[1] == 0x3f82, "tie 1+3*2^-8 -> even: %04x", out[1]);
    CHECK(out[2] == 0xbf81, "above a tie rounds away: %04x", out[2]);
    CHECK((out[3] & 0x7f80) == 0x7f80 && (out[3] & 0x7f), "NaN stays NaN: %04x", out[3]);
}

/* Each hand block below sets a few bytes; the comment derives the expected values from the format. */
static void test_hand_blocks(void) {
    float got[256], want[256];

    { /* Q4_0: d = 0x3800 = 0.5; qs[0] = 0x1f: element 0 = (0xf - 8) * 0.5 = 3.5, element 16 = (1 - 8) * 0.5
       * = -3.5; qs[1] = 0x80: element 1 = (0 - 8) * 0.5 = -4, element 17 = (8 - 8) * 0.5 = 0;
       * every other byte 0x88 decodes to 0. */
        uint8_t b[18];
        put16(b, 0x3800);
        memset(b + 2, 0x88, 16);
        b[2] = 0x1f;
        b[3] = 0x80;
        for (int i = 0; i < 32; i++) want[i] = 0;
        want[0] = 3.5f, want[16] = -3.5f, want[1] = -4.0f, want[17] = 0.0f;
        slm_ref_dequant_row(SLM_Q4_0, b, got, 32);
        check_row("q4_0", got, want, 32);
    }
    { /* Q4_1: d = 1.0 (0x3c00), m = -1.0 (0xbc00); qs[0] = 0xf0: element 0 = 0 * 1 - 1 = -1, element 16 =
       * 15 - 1 = 14; other bytes 0x11 give 1 - 1 = 0. */
        uint8_t b[20];
        put16(b, 0x3c00);
        put16(b + 2, 0xbc00);
        memset(b + 4, 0x11, 16);
        b[4] = 0xf0;
        for (int i = 0; i < 32; i++) want[i] = 0;
        want[0] = -1, want[16] = 14;
        slm_ref_dequant_row(SLM_Q4_1, b, got, 32);
        check_row("q4_1", got, want, 32);
    }
    { /* Q5_0: d = 2.0 (0x4000); qh = fd ff ff 7f = u32 0x7ffffffd: every high bit set except elements 1
       * and 31. qs all 0 except qs[0] = 0x21, qs[15] = 0xf0. So element 0 = (1|16) - 16 = 1 -> 2;
       * element 16 = (2|16) - 16 = 2 -> 4; element 1 = 0 - 16 -> -32; element 31 = 15 - 16 -> -2;
       * element 15 = 16 - 16 -> 0; the rest are 16 - 16 -> 0. */
        uint8_t b[22] = {0};
        put16(b, 0x4000);
        b[2] = 0xfd, b[3] = 0xff, b[4] = 0xff, b[5] = 0x7f;
        b[6] = 0x21;
        b[6 + 15] = 0xf0;
        for (int i = 0; i < 32; i++) want[i] = 0;
        want[0] = 2, want[16] = 4, want[1] = -32, want[31] = -2;
        slm_ref_dequant_row(SLM_Q5_0, b, got, 32);
        check_row("q5_0", got, want, 32);
    }
    { /* Q5_1: d = 0.5 (0x3800), m = 3.0 (0x4200); qh = 01 00 00 80: high bits of elements 0 and 31;
       * qs[0] = 0x0f, qs[15] = 0xf0. Element 0 = 31 * 0.5 + 3 = 18.5, element 31 = 18.5,
       * element 16 (high nibble of qs[0] = 0, no high bit) = 3, everything else 0 * 0.5 + 3 = 3. */
        uint8_t b[24] = {0};
        put16(b, 0x3800);
        put16(b + 2, 0x4200);
        b[4] = 0x01, b[7] = 0x80;
        b[8] = 0x0f;
        b[8 + 15] = 0xf0;
        for (int i = 0; i < 32; i++) want[i] = 3;
        want[0] = 18.5f, want[31] = 18.5f;
        slm_ref_dequant_row(SLM_Q5_1, b, got, 32);
        check_row("q5_1", got, want, 32);
    }
    { /* Q8_0: d = 0.25 (0x3400); qs[0] = 127 -> 31.75, qs[1] = -128 -> -32, qs[2] = -1 -> -0.25. */
        uint8_t b[34] = {0};
        put16(b, 0x3400);
        b[2] = 127, b[3] = 0x80, b[4] = 0xff;
        for (int i = 0; i < 32; i++) want[i] = 0;
        want[0] = 31.75f, want[1] = -32, want[2] = -0.25f;
        slm_ref_dequant_row(SLM_Q8_0, b, got, 32);
        check_row("q8_0", got, want, 32);
    }

    /* Q4_K / Q5_K share the scale packing. d = 1.0 (0x3c00), dmin = 0.5 (0x3800).
     * Wanted: sub-block 0: scale 1, min 2; sub-block 5: scale 42 = 0b10'1010, min 19 = 0b01'0011; others 0.
     * Packing: scales[0] = 1 (scale 0), scales[4] = 2 (min 0); the top two bits of scale 5 (0b10) go into
     * bits 6..7 of scales[1] -> 0x80; the top two bits of min 5 (0b01) into bits 6..7 of scales[5] ->
     * 0x40; scales[9] = low nibble of scale 5 (0xa) | low nibble of min 5 (0x3) << 4 = 0x3a. */
    uint8_t kscales[12] = {0x01, 0x80, 0, 0, 0x02, 0x40, 0, 0, 0, 0x3a, 0, 0};
    { /* Q4_K: sub-block j reads qs[32*(j/2) + l], low nibble for even j, high for odd j.
       * qs[0] = 0x07: element 0 = 1 * 7 - 0.5 * 2 = 6; elements 1..31 = 0 - 1 = -1; element 32 (sub-block 1,
       * high nibble of qs[0] = 0) uses scale 0 and min 0 -> 0.
       * qs[64] = 0xf0: sub-block 5 element 0 (= element 160) = 42 * 15 - 0.5 * 19 = 620.5; elements 161..191
       * = -9.5; element 128 (sub-block 4, low nibble of qs[64] = 0) -> 0. */
        uint8_t b[144] = {0};
        put16(b, 0x3c00);
        put16(b + 2, 0x3800);
        memcpy(b + 4, kscales, 12);
        b[16 + 0] = 0x07;
        b[16 + 64] = 0xf0;
        for (int i = 0; i < 256; i++) want[i] = 0;
        want[0] = 6;
        for (int i = 1; i < 32; i++) want[i] = -1;
        want[160] = 620.5f;
        for (int i = 161; i < 192; i++) want[i] = -9.5f;
        slm_ref_dequant_row(SLM_Q4_K, b, got, 256);
        check_row("q4_k", got, want, 256);
    }
    { /* Q5_K: as Q4_K, plus qh (32 bytes after the scales): bit j of qh[l] is bit 4 of element 32*j + l.
       * qh[0] = 0x01 -> element 0 = 7|16 = 23 -> 23 - 1 = 22; qh[1] = 0x20 -> element 161 = 0|16 = 16 ->
       * 42 * 16 - 9.5 = 662.5. The rest as in Q4_K. */
        uint8_t b[176] = {0};
        put16(b, 0x3c00);
        put16(b + 2, 0x3800);
        memcpy(b + 4, kscales, 12);
        b[16 + 0] = 0x01;
        b[16 + 1] = 0x20;
        b[48 + 0] = 0x07;
        b[48 + 64] = 0xf0;
        for (int i = 0; i < 256; i++) want[i] = 0;
        want[0] = 22;
        for (int i = 1; i < 32; i++) want[i] = -1;
        want[160] = 620.5f;
        for (int i = 161; i < 192; i++) want[i] = -9.5f;
        want[161] = 662.5f;
        slm_ref_dequant_row(SLM_Q5_K, b, got, 256);
        check_row("q5_k", got, want, 256);
    }
    { /* Q6_K: ql[128], qh[64], int8 scales[16], d (f16) at byte 208. d = 1.0; scales[0] = 2, scales[9] = -3,
       * scales[15] = 1, others 0. All-zero codes decode to q - 32 = -32.
       * Element 0 (half 0, quarter 0, l 0): low bits = ql[0] & 0xf = 5, high bits = qh[0] & 3 = 2 ->
       *   q = 5 + 32 = 37 -> 2 * (37 - 32) = 10; elements 1..15: 2 * -32 = -64.
       * Elements 144..159 (scale 9): codes 0 -> -3 * -32 = 96.
       * Element 255 (half 1, quarter 3, l 31): low bits = ql[64 + 32 + 31] >> 4 = 0xf, high bits =
       *   (qh[32 + 31] >> 6) & 3 = 3 -> q = 63 -> 1 * 31 = 31; elements 240..254: 1 * -32 = -32. */
        uint8_t b[210] = {0};
        b[0] = 0x05;
        b[128 + 0] = 0x02;
        b[127] = 0xf0;
        b[128 + 63] = 0xc0;
        b[192 + 0] = 2;
        b[192 + 9] = (uint8_t)-3;
        b[192 + 15] = 1;
        put16(b + 208, 0x3c00);
        for (int i = 0; i < 256; i++) want[i] = 0;
        want[0] = 10;
        for (int i = 1; i < 16; i++) want[i] = -64;
        for (int i = 144; i < 160; i++) want[i] = 96;
        for (int i = 240; i < 255; i++) want[i] = -32;
        want[255] = 31;
        slm_ref_dequant_row(SLM_Q6_K, b, got, 256);
        check_row("q6_k", got, want, 256);
    }
    { /* Plain types: f16 {1.0, -2.0}, bf16 {1.0, -3.0}, f32 copies. */
        uint16_t h[2] = {0x3c00, 0xc000}, bf[2] = {0x3f80, 0xc040};
        float f[2] = {0.125f, -7.0f};
        slm_ref_dequant_row(SLM_F16, h, got, 2);
        CHECK(got[0] == 1.0f && got[1] == -2.0f, "f16 row %g %g", got[0], got[1]);
        slm_ref_dequant_row(SLM_BF16, bf, got, 2);
        CHECK(got[0] == 1.0f && got[1] == -3.0f, "bf16 row %g %g", got[0], got[1]);
        slm_ref_dequant_row(SLM_F32, f, got, 2);
        CHECK(got[0] == 0.125f && got[1] == -7.0f, "f32 row %g %g", got[0], got[1]);
    }
}

static const struct {
    slm_dtype t;
    double nmse_max; /* uniform [-1, 1) data; about 1.5-2x what the simple schemes reach */
} k_types[] = {
    {SLM_F32, 0},       {SLM_F16, 1e-7},  {SLM_BF16, 1e-5}, {SLM_Q4_0, 8e-3}, {SLM_Q4_1, 6e-3}, {SLM_Q5_0, 2e-3},
    {SLM_Q5_1, 1.5e-3}, {SLM_Q8_0, 3e-5}, {SLM_Q4_K, 7e-3}, {SLM_Q5_K, 2e-3}, {SLM_Q6_K, 5e-4},
};

static void test_round_trip_and_dot(void) {
    enum { N = 4096 };
    static float x[N], y[N], a[N];
    static uint8_t q[N * 4];
    uint64_t seed = 0x1234567;
    for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++) {
        slm_dtype t = k_types[k].t;
        const char *name = slm_dtype_name(t);
        slm_test_fill(x, N, &seed, 1.0f);
        slm_test_fill(a, N, &seed, 1.0f);
        slm_ref_quantize_row(t, x, q, N);
        slm_ref_dequant_row(t, q, y, N);
        int finite = 1;
        for (int i = 0; i < N; i++) finite &= isfinite(y[i]) != 0;
        CHECK(finite, "%s: non-finite value after round trip", name);
        double e = slm_test_nmse(y, x, N);
        CHECK(e <= k_types[k].nmse_max, "%s: nmse %.3g above %.3g", name, e, k_types[k].nmse_max);
        /* Scaled data: the error is relative, so a x1000 input must keep the same nmse order. */
        for (int i = 0; i < N; i++) x[i] *= 1000.0f;
        slm_ref_quantize_row(t, x, q, N);
        slm_ref_dequant_row(t, q, y, N);
        e = slm_test_nmse(y, x, N);
        CHECK(e <= k_types[k].nmse_max, "%s x1000: nmse %.3g above %.3g", name, e, k_types[k].nmse_max);

        /* dot_row == dot of the dequantized row (both in double; one float rounding at the end). */
        double ref = 0;
        for (int i = 0; i < N; i++) ref += (double)y[i] * a[i];
        float got = slm_ref_dot_row(t, q, a, N);
        CHECK(fabs(got - ref) <= 1e-6 * fabs(ref) + 1e-6, "%s: dot_row %.9g, dequantized dot %.9g", name, got, ref);
        /* And a short row of one block (or one element), to cover the chunking in dot_row. */
        const slm_dtype_info *ti = slm_dtype_get((uint32_t)t);
        int n1 = ti->block_elems;
        ref = 0;
        for (int i = 0; i < n1; i++) ref += (double)y[i] * a[i];
        got = slm_ref_dot_row(t, q, a, n1);
        CHECK(fabs(got - ref) <= 1e-6 * fabs(ref) + 1e-6, "%s: one-block dot_row %.9g vs %.9g", name, got, ref);
    }
}

/* Degenerate blocks: zeros, constants and single-sign blocks must quantize without NaN/Inf, and zeros
 * must come back as zeros. */
static void test_degenerate_blocks(void) {
    static float x[512], y[512];
    static uint8_t q[2048];
    for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++) {
        slm_dtype t = k_types[k].t;
        const char *name = slm_dtype_name(t);
        for (int i = 0; i < 512; i++) x[i] = 0;
        slm_ref_quantize_row(t, x, q, 512);
        slm_ref_dequant_row(t, q, y, 512);
        int zero = 1;
        for (int i = 0; i < 512; i++) zero &= y[i] == 0;
        CHECK(zero, "%s: zeros do not come back as zeros", name);

        /* 256 constant 0.75, then 256 positive values in [2, 3]. */
        for (int i = 0; i < 256; i++) x[i] = 0.75f;
        for (int i = 256; i < 512; i++) x[i] = 2.0f + (float)(i % 37) / 36.0f;
        slm_ref_quantize_row(t, x, q, 512);
        slm_ref_dequant_row(t, q, y, 512);
        double max_err = 0;
        int finite = 1;
        for (int i = 0; i < 512; i++) {
            finite &= isfinite(y[i]) != 0;
            double err = fabs((double)y[i] - x[i]) / fabs(x[i]);
            if (err > max_err) max_err = err;
        }
        CHECK(finite, "%s: non-finite output on constant/positive blocks", name);
        /* A 4-bit code over a range [0, 3] has a step of 0.2; half a step relative to >= 0.75 is < 0.14. */
        CHECK(max_err < 0.14, "%s: max relative error %.3g on constant/positive blocks", name, max_err);
    }
}

int main(void) {
    test_half_conversions();
    test_hand_blocks();
    test_round_trip_and_dot();
    test_degenerate_blocks();
    return slm_test_finish("test_quant_ref");
}
