// Philox 4x32-10 and the fills built on it; docs/RNG.md is the specification this file implements.
#include "engine/rng.h"

#include <math.h>
#include <stddef.h>

// Random123 philox.h constants: round multipliers and the Weyl sequence added to the key per round.
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// Fills are processed in chunks of RNG_CHUNK_BLOCKS blocks: the words of a chunk are generated into
// a local buffer (4 blocks at a time, interleaved for instruction-level parallelism), then converted.
// Chunks are the unit of OpenMP work, so the result does not depend on the thread count.
#define RNG_CHUNK_BLOCKS 64
#define RNG_CHUNK_WORDS (4 * RNG_CHUNK_BLOCKS)
// Fills of fewer chunks than this run on the calling thread (an OpenMP fork costs microseconds).
#define RNG_PARALLEL_MIN_CHUNKS 64

static inline void philox_round(uint32_t c[4], uint32_t k0, uint32_t k1) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k0;
    uint32_t n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

// Ten rounds; the key is bumped by the Weyl constants before rounds 2..10 (Random123's order).
static inline void philox10(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        philox_round(c, k0, k1);
    }
}

void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
    philox10(c, key[0], key[1]);
    for (int i = 0; i < 4; i++) out[i] = c[i];
}

static inline void block_words(uint64_t seed, uint64_t stream, uint64_t block, uint32_t w[4]) {
    w[0] = (uint32_t)block;
    w[1] = (uint32_t)(block >> 32);
    w[2] = (uint32_t)stream;
    w[3] = (uint32_t)(stream >> 32);
    philox10(w, (uint32_t)seed, (uint32_t)(seed >> 32));
}

void rng_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
    block_words(seed, stream, block, out);
}

Rng rng_make(uint64_t seed, uint64_t stream) {
    Rng rng = {seed, stream, 0};
    return rng;
}

uint64_t rng_reserve(Rng *rng, uint64_t words) {
    uint64_t first = rng->offset;
    rng->offset += words / 4 + (words % 4 != 0);
    return first;
}

// Four blocks at once: four independent multiply chains per round keep the multiplier busy
// (about 1.4x faster than one block at a time). c[w][j] is word w of block j.
static inline void philox10_x4(uint32_t c[4][4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        for (int j = 0; j < 4; j++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * c[0][j];
            uint64_t p1 = (uint64_t)PHILOX_M1 * c[2][j];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1][j] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3][j] ^ k1;
            c[0][j] = n0;
            c[1][j] = (uint32_t)p1;
            c[2][j] = n2;
            c[3][j] = (uint32_t)p0;
        }
    }
}

// Words of blocks first .. first + n_blocks - 1 into w[0 .. 4 n_blocks), in order.
static void chunk_words(uint64_t seed, uint64_t stream, uint64_t first, int n_blocks, uint32_t *w) {
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    int b = 0;
    for (; b + 4 <= n_blocks; b += 4) {
        uint32_t c[4][4];
        for (int j = 0; j < 4; j++) {
            uint64_t block = first + (uint64_t)(b + j);
            c[0][j] = (uint32_t)block;
            c[1][j] = (uint32_t)(block >> 32);
            c[2][j] = (uint32_t)stream;
            c[3][j] = (uint32_t)(stream >> 32);
        }
        philox10_x4(c, k0, k1);
        for (int j = 0; j < 4; j++)
            for (int lane = 0; lane < 4; lane++) w[4 * (b + j) + lane] = c[lane][j];
    }
    for (; b < n_blocks; b++) block_words(seed, stream, first + (uint64_t)b, w + 4 * b);
}

// The chunk loop shared by the fills: element chunk c covers elements [begin, begin + count) and
// the words of blocks start + c * RNG_CHUNK_BLOCKS ...; the body (last argument) converts words
// w[] to elements.
#define FOR_EACH_CHUNK(rng, n, words_per_element, min_chunks, ...)                                 \
    do {                                                                                           \
        const uint64_t seed_ = (rng)->seed, stream_ = (rng)->stream;                               \
        const uint64_t start_ = rng_reserve((rng), (uint64_t)(n) * (words_per_element));          \
        const int64_t per_chunk_ = RNG_CHUNK_WORDS / (words_per_element);                         \
        const int64_t n_chunks_ = ((n) + per_chunk_ - 1) / per_chunk_;                              \
        const int parallel_ = n_chunks_ >= (min_chunks);                                           \
        _Pragma("omp parallel for schedule(static) if (parallel_)")                                \
        for (int64_t c_ = 0; c_ < n_chunks_; c_++) {                                               \
            const int64_t begin = c_ * per_chunk_;                                                 \
            const int count = (int)((n) - begin < per_chunk_ ? (n) - begin : per_chunk_);          \
            const int n_blocks_ = (count * (words_per_element) + 3) / 4;                           \
            uint32_t w[RNG_CHUNK_WORDS];                                                           \
            chunk_words(seed_, stream_, start_ + (uint64_t)c_ * RNG_CHUNK_BLOCKS, n_blocks_, w);  \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    } while (0)

void rng_fill_uniform_f32(Rng *rng, float *out, int64_t n, float low, float high) {
    if (n <= 0) return;
    const float range = high - low;
    const float below_high = nextafterf(high, -INFINITY);
    const int guard = low < high;
    FOR_EACH_CHUNK(rng, n, 1, RNG_PARALLEL_MIN_CHUNKS, {
        float *o = out + begin;
        for (int i = 0; i < count; i++) {
            float value = low + range * rng_u32_to_unit_f32(w[i]);
            // Rounding can land exactly on high when |low| is large against the range.
            o[i] = guard && value >= high ? below_high : value;
        }
    });
}

void rng_fill_uniform_f64(Rng *rng, double *out, int64_t n, double low, double high) {
    if (n <= 0) return;
    const double range = high - low;
    const double below_high = nextafter(high, -INFINITY);
    const int guard = low < high;
    FOR_EACH_CHUNK(rng, n, 2, RNG_PARALLEL_MIN_CHUNKS, {
        double *o = out + begin;
        for (int i = 0; i < count; i++) {
            double value = low + range * rng_u64_to_unit_f64(w[2 * i], w[2 * i + 1]);
            o[i] = guard && value >= high ? below_high : value;
        }
    });
}

// 2*pi rounded to float, the constant the f32 Box-Muller multiplies u2 by (docs/RNG.md).
#define RNG_TWO_PI_F32 6.28318548202514648f  // 0x1.921fb6p+2f

void rng_fill_normal_f32(Rng *rng, float *out, int64_t n, float mean, float std) {
    if (n <= 0) return;
    FOR_EACH_CHUNK(rng, n, 1, RNG_PARALLEL_MIN_CHUNKS / 8, {
        float *o = out + begin;
        for (int i = 0; i < count; i += 2) {  // chunks start on a block, so pairs are (even, odd)
            float u1 = rng_u32_to_open_f32(w[i]);
            float u2 = rng_u32_to_unit_f32(w[i + 1]);
            float radius = sqrtf(-2.0f * logf(u1));
            float theta = RNG_TWO_PI_F32 * u2;
            o[i] = mean + std * (radius * cosf(theta));
            if (i + 1 < count) o[i + 1] = mean + std * (radius * sinf(theta));
        }
    });
}

void rng_fill_normal_f64(Rng *rng, double *out, int64_t n, double mean, double std) {
    if (n <= 0) return;
    FOR_EACH_CHUNK(rng, n, 2, RNG_PARALLEL_MIN_CHUNKS / 8, {
        double *o = out + begin;
        for (int i = 0; i < count; i += 2) {  // elements 2b, 2b + 1 from block b of the chunk
            const uint32_t *b = w + 2 * i;
            double u1 = rng_u64_to_open_f64(b[0], b[1]);
            double u2 = rng_u64_to_unit_f64(b[2], b[3]);
            double radius = sqrt(-2.0 * log(u1));
            double theta = 2.0 * M_PI * u2;
            o[i] = mean + std * (radius * cos(theta));
            if (i + 1 < count) o[i + 1] = mean + std * (radius * sin(theta));
        }
    });
}

void rng_fill_int64(Rng *rng, int64_t *out, int64_t n, int64_t low, int64_t high) {
    if (n <= 0) return;
    if (high <= low) {
        for (int64_t i = 0; i < n; i++) out[i] = low;
        return;
    }
    const uint64_t range = (uint64_t)high - (uint64_t)low;  // in [1, 2^64), exact in unsigned arithmetic
    FOR_EACH_CHUNK(rng, n, 2, RNG_PARALLEL_MIN_CHUNKS, {
        int64_t *o = out + begin;
        for (int i = 0; i < count; i++)
            o[i] = (int64_t)((uint64_t)low + rng_u64_below(w[2 * i], w[2 * i + 1], range));
    });
}

void rng_fill_bernoulli_u8(Rng *rng, uint8_t *out, int64_t n, float p) {
    if (n <= 0) return;
    FOR_EACH_CHUNK(rng, n, 1, RNG_PARALLEL_MIN_CHUNKS, {
        uint8_t *o = out + begin;
        for (int i = 0; i < count; i++) o[i] = rng_u32_to_unit_f32(w[i]) < p;
    });
}

void rng_fill_bernoulli_f32(Rng *rng, float *out, int64_t n, float p) {
    if (n <= 0) return;
    FOR_EACH_CHUNK(rng, n, 1, RNG_PARALLEL_MIN_CHUNKS, {
        float *o = out + begin;
        for (int i = 0; i < count; i++) o[i] = rng_u32_to_unit_f32(w[i]) < p ? 1.0f : 0.0f;
    });
}

void rng_permutation(Rng *rng, int64_t *out, int64_t n) {
    if (n <= 0) return;
    for (int64_t i = 0; i < n; i++) out[i] = i;
    if (n == 1) return;
    const uint64_t draws = (uint64_t)n - 1;
    const uint64_t start = rng_reserve(rng, 2 * draws);
    uint32_t w[4];
    // Sequential: each swap depends on the previous ones; the draws themselves are counter-based.
    for (uint64_t k = 0; k < draws; k++) {
        if (k % 2 == 0) block_words(rng->seed, rng->stream, start + k / 2, w);
        int lane = (int)(k % 2) * 2;
        int64_t i = n - 1 - (int64_t)k;
        int64_t j = (int64_t)rng_u64_below(w[lane], w[lane + 1], (uint64_t)i + 1);
        int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

float rng_uniform(Rng *rng) {
    float value;
    rng_fill_uniform_f32(rng, &value, 1, 0.0f, 1.0f);
    return value;
}

float rng_normal(Rng *rng) {
    float value;
    rng_fill_normal_f32(rng, &value, 1, 0.0f, 1.0f);
    return value;
}

int64_t rng_int(Rng *rng, int64_t n) {
    if (n <= 0) return 0;
    int64_t value;
    rng_fill_int64(rng, &value, 1, 0, n);
    return value;
}
