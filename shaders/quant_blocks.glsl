// Block geometry of the weight type selected by one of WTYPE_* (the layouts are described in dequant.glsl).
#ifndef SLM_QUANT_BLOCKS_GLSL
#define SLM_QUANT_BLOCKS_GLSL
#if defined(WTYPE_F32) || defined(WTYPE_F16) || defined(WTYPE_BF16)
#define SLM_FLOAT_WEIGHTS 1
#endif

// Block geometry: elements and bytes per block (float types: a 32-element chunk).
#if defined(WTYPE_F32)
#define SLM_BLOCK_ELEMS 32u
#define SLM_BLOCK_BYTES 128u
#elif defined(WTYPE_F16) || defined(WTYPE_BF16)
#define SLM_BLOCK_ELEMS 32u
#define SLM_BLOCK_BYTES 64u
#elif defined(WTYPE_Q4_0)
#define SLM_BLOCK_ELEMS 32u
#define SLM_BLOCK_BYTES 18u
#elif defined(WTYPE_Q4_1)
#define SLM_BLOCK_ELEMS 32u
#define SLM_BLOCK_BYTES 20u
#elif defined(WTYPE_Q5_0)
#define SLM_BLOCK_ELEMS 32u
#define SLM_BLOCK_BYTES 22u
#elif defined(WTYPE_Q5_1)
#define SLM_BLOCK_ELEMS 32u
#define SLM_BLOCK_BYTES 24u
#elif defined(WTYPE_Q8_0)
#define SLM_BLOCK_ELEMS 32u
#define SLM_BLOCK_BYTES 34u
#elif defined(WTYPE_Q4_K)
#define SLM_BLOCK_ELEMS 256u
#define SLM_BLOCK_BYTES 144u
#elif defined(WTYPE_Q5_K)
#define SLM_BLOCK_ELEMS 256u
#define SLM_BLOCK_BYTES 176u
#elif defined(WTYPE_Q6_K)
#define SLM_BLOCK_ELEMS 256u
#define SLM_BLOCK_BYTES 210u
#endif
// Words that hold one block starting at an even byte offset (one more than its size when it starts mid-word).
#define SLM_BLOCK_WORDS ((SLM_BLOCK_BYTES + 3u) / 4u + 1u)

#endif
