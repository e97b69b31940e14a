// Philox 4x32-10 known answers, the documented (seed, stream, offset) mapping, distribution checks
// with stated tolerances, offset continuation, and independence from the OpenMP thread count.
#include <omp.h>
#include <stdint.h>

#include "engine/rng.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

// Known-answer vectors. The first three are the "philox4x32 10" lines of Random123's
// tests/kat_vectors (github.com/DEShawResearch/random123, commit 9545ff64, lines 27-29): counter of
// zeros / all ones / digits of pi. The last two come from the longer generated list in
// github.com/girving/random123-manual examples/kat_vectors ("philox4x32 10" lines), and pin which
// word of the counter and key is which. Columns: counter[4], key[2], expected[4].
static const uint32_t philox_kat[][10] = {
    {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
     0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
     0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
     0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    {0x00000001, 0x00000000, 0x00000000, 0x00000000, 0x00000001, 0x00000000,
     0xac08141b, 0xdfc5ccbe, 0x79c07a47, 0xa7f66093},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0x00000000, 0xffffffff,
     0x08f7720c, 0x845ee9e0, 0x502ccd3d, 0xa9a00e27},
};

TEST(philox_known_answers) {
    for (size_t v = 0; v < sizeof philox_kat / sizeof philox_kat[0]; v++) {
        const uint32_t *row = philox_kat[v];
        uint32_t out[4];
        philox4x32_10(row, row + 4, out);
        for (int i = 0; i < 4; i++)
            CHECK_MSG(out[i] == row[6 + i], "vector %zu word %d: got %08x, expected %08x", v, i,
                      out[i], row[6 + i]);
    }
}

// The mapping of docs/RNG.md, recomputed here from philox4x32_10 itself.
static uint32_t word_at(uint64_t seed, uint64_t stream, uint64_t word) {
    uint64_t block = word / 4;
    uint32_t counter[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                           (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    philox4x32_10(counter, key, out);
    return out[word % 4];
}

TEST(documented_mapping) {
    const uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull;
    Rng rng = rng_make(seed, stream);
    rng.offset = (1ull << 32) + 3;  // a block counter that needs both counter words
    const uint64_t w0 = rng.offset * 4;

    float u[7];
    rng_fill_uniform_f32(&rng, u, 7, 0.0f, 1.0f);
    for (int i = 0; i < 7; i++)
        CHECK(u[i] == (float)(word_at(seed, stream, w0 + i) >> 8) * 0x1p-24f);
    CHECK(rng.offset == (1ull << 32) + 3 + 2);  // 7 words -> 2 blocks

    const uint64_t w1 = rng.offset * 4;
    float z[5];
    rng_fill_normal_f32(&rng, z, 5, 0.0f, 1.0f);
    for (int i = 0; i < 5; i++) {
        uint64_t pair = w1 + (uint64_t)(i / 2) * 2;
        float u1 = ((float)word_at(seed, stream, pair) + 1.0f) * 0x1p-32f;
        float u2 = (float)(word_at(seed, stream, pair + 1) >> 8) * 0x1p-24f;
        float r = sqrtf(-2.0f * logf(u1)), theta = 6.28318548202514648f * u2;
        CHECK(z[i] == (i % 2 == 0 ? r * cosf(theta) : r * sinf(theta)));
    }
    CHECK(rng.offset == (1ull << 32) + 3 + 2 + 2);

    const uint64_t w2 = rng.offset * 4;
    int64_t k[3];
    rng_fill_int64(&rng, k, 3, -5, 1000000007);
    for (int i = 0; i < 3; i++) {
        uint64_t x = ((uint64_t)word_at(seed, stream, w2 + 2 * i + 1) << 32) |
                     word_at(seed, stream, w2 + 2 * i);
        uint64_t expected = (uint64_t)(((unsigned __int128)x * 1000000012u) >> 64);
        CHECK(k[i] == (int64_t)expected - 5);
    }
    CHECK(rng.offset == (1ull << 32) + 3 + 2 + 2 + 2);

    const uint64_t w3 = rng.offset * 4;
    double d[3];
    rng_fill_uniform_f64(&rng, d, 3, 0.0, 1.0);
    for (int i = 0; i < 3; i++) {
        uint64_t x = ((uint64_t)word_at(seed, stream, w3 + 2 * i + 1) << 32) |
                     word_at(seed, stream, w3 + 2 * i);
        CHECK(d[i] == (double)(x >> 11) * 0x1p-53);
    }
}

// Literal values for seed 42, stream 0, so that another implementation (the CUDA kernels) can be
// checked against numbers rather than against this code. They were cross-checked with an independent
// 20-line Python Philox (Python integers, no shared code) and are listed in docs/RNG.md.
TEST(reference_values) {
    uint32_t w[4];
    rng_block(42, 0, 0, w);
    const uint32_t words[4] = {0x9ceaf053u, 0x77f5493bu, 0x12bf50adu, 0x5742b3d7u};
    for (int i = 0; i < 4; i++) CHECK_MSG(w[i] == words[i], "word %d = 0x%08x", i, w[i]);

    Rng rng = rng_make(42, 0);
    float u[4];
    rng_fill_uniform_f32(&rng, u, 4, 0.0f, 1.0f);
    const float uniforms[4] = {0x1.39d5ep-1f, 0x1.dfd524p-2f, 0x1.2bf5p-4f, 0x1.5d0accp-2f};
    for (int i = 0; i < 4; i++) CHECK(u[i] == uniforms[i]);
    CHECK(rng.offset == 1);

    // Normals from the same block. f32 logf/cosf/sinf differ between libraries by an ulp or two, so
    // compare with 1e-6 (about 8 ulps at |z| ~ 1) against values computed in double.
    Rng again = rng_make(42, 0);
    float z[4];
    rng_fill_normal_f32(&again, z, 4, 0.0f, 1.0f);
    const double normals[4] = {-0.9701898381301416, 0.19401887825911565, -1.2356201700379061,
                               1.9239271402455969};
    for (int i = 0; i < 4; i++) CHECK_CLOSE(z[i], normals[i], 1e-6, 1e-6);

    // rng_int(10) at offset 1 uses words 0 and 1 of block 1.
    CHECK(rng_int(&rng, 10) == 3);
    CHECK(rng.offset == 2);
}

TEST(uniform_moments_and_range) {
    // n = 2^20: the mean has standard error sqrt(1/12/n) = 2.8e-4 and the variance
    // sqrt((1/80 - 1/144)/n) = 7.3e-5; the bounds below are about 7 standard errors.
    const int64_t n = 1 << 20;
    float *x = malloc(n * sizeof *x);
    Rng rng = rng_make(1234, 7);
    rng_fill_uniform_f32(&rng, x, n, 0.0f, 1.0f);
    double sum = 0, sum2 = 0;
    int in_range = 1;
    for (int64_t i = 0; i < n; i++) {
        sum += x[i];
        sum2 += (double)x[i] * x[i];
        in_range &= x[i] >= 0.0f && x[i] < 1.0f;
    }
    double mean = sum / n, var = sum2 / n - mean * mean;
    CHECK(in_range);
    CHECK_CLOSE(mean, 0.5, 2e-3, 0);
    CHECK_CLOSE(var, 1.0 / 12, 5e-4, 0);

    rng_fill_uniform_f32(&rng, x, n, -3.0f, 5.0f);
    sum = 0;
    in_range = 1;
    for (int64_t i = 0; i < n; i++) {
        sum += x[i];
        in_range &= x[i] >= -3.0f && x[i] < 5.0f;
    }
    CHECK(in_range);
    CHECK_CLOSE(sum / n, 1.0, 8 * 2e-3, 0);  // the range is 8 times wider

    // A range where low + (high - low) * u rounds up to high for u near 1: still below high.
    rng_fill_uniform_f32(&rng, x, 4096, 1e8f, 1e8f + 16.0f);
    in_range = 1;
    for (int i = 0; i < 4096; i++) in_range &= x[i] >= 1e8f && x[i] < 1e8f + 16.0f;
    CHECK(in_range);
    free(x);

    double *y = malloc(n * sizeof *y);
    rng_fill_uniform_f64(&rng, y, n, -1.0, 1.0);
    sum = 0;
    sum2 = 0;
    in_range = 1;
    for (int64_t i = 0; i < n; i++) {
        sum += y[i];
        sum2 += y[i] * y[i];
        in_range &= y[i] >= -1.0 && y[i] < 1.0;
    }
    CHECK(in_range);
    CHECK_CLOSE(sum / n, 0.0, 4e-3, 0);
    CHECK_CLOSE(sum2 / n, 1.0 / 3, 2e-3, 0);
    free(y);
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Kolmogorov-Smirnov distance between the sorted sample and the standard normal CDF.
static double ks_normal(double *sorted, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double cdf = 0.5 * erfc(-sorted[i] / sqrt(2.0));
        double above = (double)(i + 1) / n - cdf, below = cdf - (double)i / n;
        if (above > worst) worst = above;
        if (below > worst) worst = below;
    }
    return worst;
}

TEST(normal_moments_and_ks) {
    // n = 2^20 standard normals: standard errors of the mean 1/sqrt(n) = 9.8e-4, of the variance
    // sqrt(2/n) = 1.4e-3, of the third moment sqrt(15/n) = 3.8e-3, of the fourth sqrt(96/n) = 9.6e-3;
    // bounds are about 6 standard errors.
    const int64_t n = 1 << 20;
    float *x = malloc(n * sizeof *x);
    Rng rng = rng_make(99, 3);
    rng_fill_normal_f32(&rng, x, n, 0.0f, 1.0f);
    double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
    int finite = 1;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        finite &= isfinite(x[i]) && fabs(v) < 7.0;  // u1 >= 2^-32 caps |z| at sqrt(64 ln 2) = 6.66
        m1 += v;
        m2 += v * v;
        m3 += v * v * v;
        m4 += v * v * v * v;
    }
    CHECK(finite);
    CHECK_CLOSE(m1 / n, 0.0, 6e-3, 0);
    CHECK_CLOSE(m2 / n, 1.0, 9e-3, 0);
    CHECK_CLOSE(m3 / n, 0.0, 2.3e-2, 0);
    CHECK_CLOSE(m4 / n, 3.0, 6e-2, 0);

    // KS on the first 2^16 values (even = cosine, odd = sine branch both included): the 0.1%
    // critical value is 1.95 / sqrt(n) = 7.6e-3.
    const int64_t n_ks = 1 << 16;
    double *sorted = malloc(n_ks * sizeof *sorted);
    for (int64_t i = 0; i < n_ks; i++) sorted[i] = x[i];
    qsort(sorted, n_ks, sizeof *sorted, compare_double);
    double d = ks_normal(sorted, n_ks);
    CHECK_MSG(d < 1.95 / sqrt((double)n_ks), "KS distance %g", d);
    // The sine branch alone (odd indices) must also be normal: it is not a copy of the cosine one.
    for (int64_t i = 0; i < n_ks; i++) sorted[i] = x[2 * i + 1];
    qsort(sorted, n_ks, sizeof *sorted, compare_double);
    d = ks_normal(sorted, n_ks);
    CHECK_MSG(d < 1.95 / sqrt((double)n_ks), "KS distance (odd elements) %g", d);

    // mean and std are applied as mean + std * z.
    rng_fill_normal_f32(&rng, x, n, 2.0f, 0.5f);
    m1 = m2 = 0;
    for (int64_t i = 0; i < n; i++) {
        m1 += x[i];
        m2 += ((double)x[i] - 2.0) * ((double)x[i] - 2.0);
    }
    CHECK_CLOSE(m1 / n, 2.0, 3e-3, 0);
    CHECK_CLOSE(m2 / n, 0.25, 2.3e-3, 0);
    free(x);

    double *y = malloc(n_ks * sizeof *y);
    rng_fill_normal_f64(&rng, y, n_ks, 0.0, 1.0);
    qsort(y, n_ks, sizeof *y, compare_double);
    d = ks_normal(y, n_ks);
    CHECK_MSG(d < 1.95 / sqrt((double)n_ks), "KS distance (f64) %g", d);
    free(sorted);
    free(y);
}

TEST(integer_range_and_buckets) {
    // 10 buckets, 10^6 draws: chi-square with 9 degrees of freedom exceeds 27.9 with probability
    // 0.001; the bound is 33 (p ~ 1.3e-4).
    const int64_t n = 1000000, low = -3, high = 7;
    int64_t *k = malloc(n * sizeof *k);
    Rng rng = rng_make(5, 0);
    rng_fill_int64(&rng, k, n, low, high);
    int64_t counts[10] = {0};
    int in_range = 1;
    for (int64_t i = 0; i < n; i++) {
        in_range &= k[i] >= low && k[i] < high;
        if (k[i] >= low && k[i] < high) counts[k[i] - low]++;
    }
    CHECK(in_range);
    double chi2 = 0, expected = (double)n / 10;
    for (int b = 0; b < 10; b++) chi2 += (counts[b] - expected) * (counts[b] - expected) / expected;
    CHECK_MSG(chi2 < 33.0, "chi-square %g", chi2);

    // Ranges of 2^32 and more use all 64 bits of the draw: the top bucket must be reached.
    const int64_t big = 3000000000000ll;
    rng_fill_int64(&rng, k, 100000, 0, big);
    int64_t largest = 0;
    in_range = 1;
    for (int i = 0; i < 100000; i++) {
        in_range &= k[i] >= 0 && k[i] < big;
        if (k[i] > largest) largest = k[i];
    }
    CHECK(in_range);
    CHECK(largest > big / 100 * 99);
    // The widest range the type allows.
    rng_fill_int64(&rng, k, 1000, INT64_MIN, INT64_MAX);
    int negative = 0;
    for (int i = 0; i < 1000; i++) negative += k[i] < 0;
    CHECK(negative > 400 && negative < 600);
    // Empty ranges fill with low and draw nothing.
    uint64_t offset = rng.offset;
    rng_fill_int64(&rng, k, 4, 3, 3);
    CHECK(k[0] == 3 && k[3] == 3 && rng.offset == offset);
    CHECK(rng_int(&rng, 0) == 0 && rng.offset == offset);
    for (int i = 0; i < 100; i++) {
        int64_t v = rng_int(&rng, 3);
        CHECK(v >= 0 && v < 3);
    }
    free(k);
}

TEST(bernoulli_rate) {
    // p = 0.3, n = 10^6: standard error sqrt(0.21 / n) = 4.6e-4; bound 6 standard errors.
    const int64_t n = 1000000;
    uint8_t *m = malloc(n);
    float *f = malloc(n * sizeof *f);
    Rng a = rng_make(77, 1), b = rng_make(77, 1);
    rng_fill_bernoulli_u8(&a, m, n, 0.3f);
    rng_fill_bernoulli_f32(&b, f, n, 0.3f);
    int64_t ones = 0;
    int same = 1, binary = 1;
    for (int64_t i = 0; i < n; i++) {
        ones += m[i];
        binary &= m[i] <= 1 && (f[i] == 0.0f || f[i] == 1.0f);
        same &= (float)m[i] == f[i];
    }
    CHECK(binary);
    CHECK(same);  // the u8 and f32 masks use the same words
    CHECK_CLOSE((double)ones / n, 0.3, 2.8e-3, 0);
    rng_fill_bernoulli_u8(&a, m, 1000, 0.0f);
    rng_fill_bernoulli_f32(&a, f, 1000, 1.0f);
    int all_zero = 1, all_one = 1;
    for (int i = 0; i < 1000; i++) {
        all_zero &= m[i] == 0;
        all_one &= f[i] == 1.0f;
    }
    CHECK(all_zero);
    CHECK(all_one);
    free(m);
    free(f);
}

static int is_permutation(const int64_t *p, int64_t n) {
    char *seen = calloc(n > 0 ? n : 1, 1);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
        else seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

TEST(permutation) {
    const int64_t n = 1000;
    int64_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    Rng r1 = rng_make(1, 0), r2 = rng_make(2, 0), r1_again = rng_make(1, 0);
    rng_permutation(&r1, a, n);
    CHECK(is_permutation(a, n));
    CHECK(r1.offset == (2 * (uint64_t)(n - 1) + 3) / 4);
    rng_permutation(&r2, b, n);
    CHECK(is_permutation(b, n));
    CHECK(memcmp(a, b, n * sizeof *a) != 0);  // different seeds
    rng_permutation(&r1_again, b, n);
    CHECK(memcmp(a, b, n * sizeof *a) == 0);  // same seed
    int fixed = 0;
    for (int64_t i = 0; i < n; i++) fixed += a[i] == i;
    CHECK(fixed < 10);  // expected 1 fixed point

    // All 24 orders of 4 elements, 24000 shuffles: chi-square with 23 degrees of freedom exceeds
    // 49.7 with probability 0.001; bound 55.
    int64_t counts[256] = {0};
    Rng r = rng_make(3, 9);
    int ok = 1;
    for (int t = 0; t < 24000; t++) {
        int64_t p[4];
        rng_permutation(&r, p, 4);
        ok &= is_permutation(p, 4);
        counts[p[0] * 64 + p[1] * 16 + p[2] * 4 + p[3]]++;
    }
    CHECK(ok);
    double chi2 = 0;
    int distinct = 0;
    for (int c = 0; c < 256; c++)
        if (counts[c]) {
            distinct++;
            chi2 += (counts[c] - 1000.0) * (counts[c] - 1000.0) / 1000.0;
        }
    CHECK(distinct == 24);
    CHECK_MSG(chi2 < 55.0, "chi-square %g", chi2);

    int64_t one = -1;
    uint64_t offset = r.offset;
    rng_permutation(&r, &one, 1);
    CHECK(one == 0 && r.offset == offset);
    free(a);
    free(b);
}

TEST(offset_continuation_and_streams) {
    const int64_t n = 1000, split = 400;  // split on a block boundary: 400 words = 100 blocks
    float whole[1000], parts[1000], other[1000];
    Rng a = rng_make(2024, 1), b = rng_make(2024, 1);
    rng_fill_uniform_f32(&a, whole, n, 0.0f, 1.0f);
    rng_fill_uniform_f32(&b, parts, split, 0.0f, 1.0f);
    rng_fill_uniform_f32(&b, parts + split, n - split, 0.0f, 1.0f);
    CHECK(memcmp(whole, parts, sizeof whole) == 0);
    CHECK(a.offset == 250 && b.offset == 250);

    // A resumed run: the same (seed, stream, offset) continues the stream.
    Rng resumed = rng_make(2024, 1);
    resumed.offset = 100;
    rng_fill_uniform_f32(&resumed, other, n - split, 0.0f, 1.0f);
    CHECK(memcmp(whole + split, other, (n - split) * sizeof *other) == 0);

    // Normals: 1 word each, pairs inside a block, so a block-aligned split gives the same values.
    a = rng_make(2024, 2);
    b = rng_make(2024, 2);
    rng_fill_normal_f32(&a, whole, n, 0.0f, 1.0f);
    rng_fill_normal_f32(&b, parts, split, 0.0f, 1.0f);
    rng_fill_normal_f32(&b, parts + split, n - split, 0.0f, 1.0f);
    CHECK(memcmp(whole, parts, sizeof whole) == 0);

    // Integers: 2 words each; a split at an even count is block-aligned.
    int64_t iw[100], ip[100];
    a = rng_make(2024, 3);
    b = rng_make(2024, 3);
    rng_fill_int64(&a, iw, 100, 0, 1000);
    rng_fill_int64(&b, ip, 38, 0, 1000);
    rng_fill_int64(&b, ip + 38, 62, 0, 1000);
    CHECK(memcmp(iw, ip, sizeof iw) == 0);

    // A split off a block boundary starts the second fill on a fresh block (documented).
    a = rng_make(2024, 1);
    rng_fill_uniform_f32(&a, whole, 8, 0.0f, 1.0f);
    a = rng_make(2024, 1);
    rng_fill_uniform_f32(&a, parts, 3, 0.0f, 1.0f);
    CHECK(a.offset == 1);
    rng_fill_uniform_f32(&a, parts + 3, 4, 0.0f, 1.0f);
    CHECK(memcmp(parts, whole, 3 * sizeof *parts) == 0);
    CHECK(parts[3] == whole[4]);  // the second fill starts at word 4, not word 3

    // Different streams and different seeds give different numbers.
    Rng s1 = rng_make(2024, 1), s2 = rng_make(2024, 2), s3 = rng_make(2025, 1);
    rng_fill_uniform_f32(&s1, whole, n, 0.0f, 1.0f);
    rng_fill_uniform_f32(&s2, parts, n, 0.0f, 1.0f);
    rng_fill_uniform_f32(&s3, other, n, 0.0f, 1.0f);
    int equal12 = 0, equal13 = 0;
    for (int64_t i = 0; i < n; i++) {
        equal12 += whole[i] == parts[i];
        equal13 += whole[i] == other[i];
    }
    CHECK(equal12 < 5 && equal13 < 5);  // 24-bit values: a coincidence has probability 6e-8 each
}

TEST(thread_count_independence) {
    // 2^18 elements: above the size where the fills go parallel.
    const int64_t n = 1 << 18;
    float *u1 = malloc(n * sizeof *u1), *u2 = malloc(n * sizeof *u2);
    float *z1 = malloc(n * sizeof *z1), *z2 = malloc(n * sizeof *z2);
    double *d1 = malloc(n * sizeof *d1), *d2 = malloc(n * sizeof *d2);
    double *g1 = malloc(n * sizeof *g1), *g2 = malloc(n * sizeof *g2);
    int64_t *k1 = malloc(n * sizeof *k1), *k2 = malloc(n * sizeof *k2);
    uint8_t *m1 = malloc(n), *m2 = malloc(n);
    int saved = omp_get_max_threads();
    for (int pass = 0; pass < 2; pass++) {
        omp_set_num_threads(pass == 0 ? 1 : 2);
        Rng rng = rng_make(31337, 4);
        rng_fill_uniform_f32(&rng, pass ? u2 : u1, n, -1.0f, 1.0f);
        rng_fill_normal_f32(&rng, pass ? z2 : z1, n, 0.0f, 1.0f);
        rng_fill_uniform_f64(&rng, pass ? d2 : d1, n, 0.0, 1.0);
        rng_fill_normal_f64(&rng, pass ? g2 : g1, n, 0.0, 1.0);
        rng_fill_int64(&rng, pass ? k2 : k1, n, 0, 12345);
        rng_fill_bernoulli_u8(&rng, pass ? m2 : m1, n, 0.5f);
    }
    omp_set_num_threads(saved);
    CHECK(memcmp(u1, u2, n * sizeof *u1) == 0);
    CHECK(memcmp(z1, z2, n * sizeof *z1) == 0);
    CHECK(memcmp(d1, d2, n * sizeof *d1) == 0);
    CHECK(memcmp(g1, g2, n * sizeof *g1) == 0);
    CHECK(memcmp(k1, k2, n * sizeof *k1) == 0);
    CHECK(memcmp(m1, m2, n) == 0);
    free(u1), free(u2), free(z1), free(z2), free(d1), free(d2), free(g1), free(g2);
    free(k1), free(k2), free(m1), free(m2);
}

int main(void) {
    RUN_TEST(philox_known_answers);
    RUN_TEST(documented_mapping);
    RUN_TEST(reference_values);
    RUN_TEST(uniform_moments_and_range);
    RUN_TEST(normal_moments_and_ks);
    RUN_TEST(integer_range_and_buckets);
    RUN_TEST(bernoulli_rate);
    RUN_TEST(permutation);
    RUN_TEST(offset_continuation_and_streams);
    RUN_TEST(thread_count_independence);
    return test_summary();
}
