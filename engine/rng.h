// Counter-based random numbers: Philox 4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel Random
// Numbers: As Easy as 1, 2, 3", SC11; the Random123 library). Every value is a pure function of
// (seed, stream, block counter, lane), so a fill can be split across OpenMP threads or CUDA threads
// and still give the same numbers, and a resumed run continues a stream by restoring `offset`.
//
// The mapping (docs/RNG.md has the full text, with the conversions to floats and integers):
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (block & 0xffffffff, block >> 32, stream & 0xffffffff, stream >> 32)
//   words   = philox4x32_10(counter, key) -> w[0..3], the four 32-bit "lanes" of the block.
//   A fill starts at block `rng->offset`, reads word j of the fill (j = 0, 1, 2, ...) from block
//   offset + j / 4, lane j % 4, and then advances `offset` by ceil(words used / 4): every fill
//   starts on a fresh block, so a CUDA thread t computes block offset + t and writes the elements
//   that come from its four words.
#pragma once
#include <stdint.h>

// One stream of random numbers. `offset` counts Philox blocks (128-bit counters, 4 words) used so far;
// save (seed, stream, offset) in a checkpoint to continue exactly.
typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint64_t offset;
} Rng;

Rng rng_make(uint64_t seed, uint64_t stream);

// The Philox 4x32 bijection with 10 rounds, exactly as Random123's philox4x32_R(10, ctr, key).
void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

// The four words of block `block` of stream (seed, stream), per the mapping above.
void rng_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]);

// Reserves the blocks for a draw of `words` 32-bit words (rounded up to whole blocks) and returns the
// first block. For ops that draw their own numbers (dropout on the GPU): pass (seed, stream, first
// block) to the kernel and follow docs/RNG.md.
uint64_t rng_reserve(Rng *rng, uint64_t words);

// Word -> number conversions, shared by every fill (docs/RNG.md, "Conversions").
// Uniform in [0, 1) with 24 random bits: (x >> 8) * 2^-24.
static inline float rng_u32_to_unit_f32(uint32_t x) { return (float)(x >> 8) * 0x1p-24f; }
// Uniform in (0, 1] for the logarithm in Box-Muller: ((float)x + 1) * 2^-32, never 0.
static inline float rng_u32_to_open_f32(uint32_t x) { return ((float)x + 1.0f) * 0x1p-32f; }
// Uniform in [0, 1) with 53 random bits from two words (lo first): (((hi << 32) | lo) >> 11) * 2^-53.
static inline double rng_u64_to_unit_f64(uint32_t lo, uint32_t hi) {
    return (double)((((uint64_t)hi << 32) | lo) >> 11) * 0x1p-53;
}
// Uniform in (0, 1] from two words: ((((hi << 32) | lo) >> 11) + 1) * 2^-53.
static inline double rng_u64_to_open_f64(uint32_t lo, uint32_t hi) {
    return (double)(((((uint64_t)hi << 32) | lo) >> 11) + 1) * 0x1p-53;
}
// High 64 bits of the 128-bit product a * b (CUDA: __umul64hi).
static inline uint64_t rng_mulhi64(uint64_t a, uint64_t b) {
#ifdef __SIZEOF_INT128__
    __extension__ typedef unsigned __int128 rng_u128;
    return (uint64_t)(((rng_u128)a * b) >> 64);
#else
    uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
    uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
    uint64_t cross = (lo_lo >> 32) + (uint32_t)hi_lo + lo_hi;  // < 2^64, no overflow
    return hi_hi + (hi_lo >> 32) + (cross >> 32);
#endif
}
// An integer in [0, n) from two words: the high 64 bits of the 128-bit product ((hi << 32) | lo) * n
// (Lemire's multiply-high without rejection; bias at most n / 2^64 per value). n = 0 means 2^64.
static inline uint64_t rng_u64_below(uint32_t lo, uint32_t hi, uint64_t n) {
    uint64_t x = ((uint64_t)hi << 32) | lo;
    if (n == 0) return x;
    return rng_mulhi64(x, n);
}

// Fills. Each advances rng->offset by the blocks it used (docs/RNG.md lists the words per element)
// and gives the same values whatever the number of OpenMP threads. n <= 0 draws nothing.

// low + (high - low) * u, u = rng_u32_to_unit_f32(word i), in [low, high) (requires low <= high; a
// value that rounds up to high is replaced by the float just below it). 1 word per element.
void rng_fill_uniform_f32(Rng *rng, float *out, int64_t n, float low, float high);
// 2 words per element (lo = word 2i, hi = word 2i + 1), 53 bits.
void rng_fill_uniform_f64(Rng *rng, double *out, int64_t n, double low, double high);
// Box-Muller: words (2k, 2k + 1) give u1 = open(w[2k]), u2 = unit(w[2k + 1]), r = sqrt(-2 ln u1),
// element 2k = mean + std * r cos(2 pi u2), element 2k + 1 = mean + std * r sin(2 pi u2).
// 1 word per element (an odd n leaves the sine of its last pair unused).
void rng_fill_normal_f32(Rng *rng, float *out, int64_t n, float mean, float std);
// Box-Muller in f64: block b gives u1 from (w0, w1), u2 from (w2, w3), elements 2b (cos) and 2b+1
// (sin). 2 words per element.
void rng_fill_normal_f64(Rng *rng, double *out, int64_t n, double mean, double std);
// Integers in [low, high) (requires low < high, else fills with low): low + rng_u64_below(w[2i],
// w[2i + 1], high - low). 2 words per element.
void rng_fill_int64(Rng *rng, int64_t *out, int64_t n, int64_t low, int64_t high);
// Bernoulli(p): 1 when rng_u32_to_unit_f32(word i) < p, else 0. 1 word per element.
void rng_fill_bernoulli_u8(Rng *rng, uint8_t *out, int64_t n, float p);
void rng_fill_bernoulli_f32(Rng *rng, float *out, int64_t n, float p);  // 1.0f / 0.0f
// A random permutation of 0..n-1 by Fisher-Yates: out = identity; for k = 0 .. n-2, i = n-1-k,
// j = rng_u64_below(word 2k, word 2k+1, i + 1), swap out[i] and out[j]. 2 (n - 1) words.
void rng_permutation(Rng *rng, int64_t *out, int64_t n);

// Single draws: each is a fill of one element, so each uses one whole block.
float rng_uniform(Rng *rng);           // [0, 1)
float rng_normal(Rng *rng);            // standard normal
int64_t rng_int(Rng *rng, int64_t n);  // [0, n); 0 when n <= 0
