// Gradient buckets (engine/dist_buckets.h).
#include "engine/dist_buckets.h"

#include <stdlib.h>
#include <string.h>

static const GradientBuckets *sorting;  // for qsort's comparators (set just before each qsort)
static const int64_t *sort_keys;

// (start, size), so that zero-size ranges sharing a start stay apart in the lookup.
static int by_start(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    int64_t x = sorting->range_start[i], y = sorting->range_start[j];
    if (x != y) return (x > y) - (x < y);
    x = sorting->range_size[i], y = sorting->range_size[j];
    return (x > y) - (x < y);
}

// Launch order: earliest-created parameter later first; then higher bucket index first.
static int by_launch(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    int64_t x = sort_keys[i], y = sort_keys[j];
    if (x != y) return x > y ? -1 : 1;
    return (i > j) ? -1 : (i < j);
}

void gradient_buckets_range(const GradientBuckets *b, int64_t k, int64_t *start, int64_t *count) {
    *start = k * b->bucket;
    *count = b->n - *start < b->bucket ? b->n - *start : b->bucket;
}

void gradient_buckets_reset(GradientBuckets *b) {
    for (int64_t k = 0; k < b->count; k++) {
        int64_t start, count;
        gradient_buckets_range(b, k, &start, &count);
        b->unready[k] = count;
    }
    memset(b->range_ready, 0, (size_t)(b->ranges ? b->ranges : 1) * sizeof(bool));
    b->next = 0;
}

int gradient_buckets_init(GradientBuckets *b, int64_t n, size_t bucket_bytes, int ranges, const int64_t *start,
                          const int64_t *size) {
    memset(b, 0, sizeof *b);
    if (bucket_bytes == 0) bucket_bytes = 25u << 20;
    b->n = n;
    b->bucket = (int64_t)(bucket_bytes / sizeof(float));
    if (b->bucket < 1) b->bucket = 1;
    b->count = n > 0 ? (n + b->bucket - 1) / b->bucket : 0;
    b->ranges = ranges;
    size_t r1 = (size_t)(ranges ? ranges : 1), c1 = (size_t)(b->count ? b->count : 1);
    b->unready = calloc(c1, sizeof(int64_t));
    b->order = calloc(c1, sizeof(int64_t));
    b->range_start = calloc(r1, sizeof(int64_t));
    b->range_size = calloc(r1, sizeof(int64_t));
    b->by_start = calloc(r1, sizeof(int));
    b->range_ready = calloc(r1, sizeof(bool));
    int64_t *earliest = calloc(c1, sizeof(int64_t));
    if (!b->unready || !b->order || !b->range_start || !b->range_size || !b->by_start || !b->range_ready || !earliest) {
        free(earliest);
        gradient_buckets_free(b);
        return -1;
    }
    for (int64_t k = 0; k < b->count; k++) earliest[k] = INT64_MAX;  // no parameter: launched last
    for (int r = 0; r < ranges; r++) {
        if (start[r] < 0 || size[r] < 0 || start[r] + size[r] > n) {
            free(earliest);
            gradient_buckets_free(b);
            return -1;
        }
        b->range_start[r] = start[r];
        b->range_size[r] = size[r];
        b->by_start[r] = r;
        if (size[r] == 0) continue;
        for (int64_t k = start[r] / b->bucket; k <= (start[r] + size[r] - 1) / b->bucket; k++)
            if (earliest[k] == INT64_MAX) earliest[k] = r;  // ranges come in creation order
    }
    // A bucket no parameter touches (none in a ParamStore) is launched last.
    for (int64_t k = 0; k < b->count; k++) {
        if (earliest[k] == INT64_MAX) earliest[k] = -1;
        b->order[k] = k;
    }
    sorting = b;
    qsort(b->by_start, (size_t)ranges, sizeof(int), by_start);
    sort_keys = earliest;
    qsort(b->order, (size_t)b->count, sizeof(int64_t), by_launch);
    free(earliest);
    gradient_buckets_reset(b);
    return 0;
}

void gradient_buckets_free(GradientBuckets *b) {
    free(b->unready);
    free(b->order);
    free(b->range_start);
    free(b->range_size);
    free(b->by_start);
    free(b->range_ready);
    memset(b, 0, sizeof *b);
}

int gradient_buckets_mark_ready(GradientBuckets *b, int64_t start, int64_t size) {
    int low = 0, high = b->ranges - 1, found = -1;
    while (low <= high) {  // binary search of start among the ranges
        int middle = (low + high) / 2, r = b->by_start[middle];
        if (b->range_start[r] == start && b->range_size[r] == size) {
            found = r;
            break;
        }
        if (b->range_start[r] < start || (b->range_start[r] == start && b->range_size[r] < size)) low = middle + 1;
        else high = middle - 1;
    }
    if (found < 0) return 1;
    if (b->range_ready[found]) return 2;
    b->range_ready[found] = true;
    for (int64_t at = start; at < start + size;) {
        int64_t k = at / b->bucket, end = (k + 1) * b->bucket < start + size ? (k + 1) * b->bucket : start + size;
        b->unready[k] -= end - at;
        at = end;
    }
    return 0;
}

int64_t gradient_buckets_pop(GradientBuckets *b, bool force) {
    if (b->next >= b->count) return -1;
    int64_t k = b->order[b->next];
    if (!force && b->unready[k] > 0) return -1;
    b->next++;
    return k;
}
