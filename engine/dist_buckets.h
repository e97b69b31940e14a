// Gradient buckets: which fixed ranges of a flat gradient buffer may be all-reduced now, as
// backward makes the parameters' gradients final one by one (engine/dist_gradients.c).
//
// Boundaries: bucket k is elements [k * B, min((k + 1) * B, n)) with B = bucket_bytes / 4 — the
// same ranges the post-backward averaging reduces, so overlapping changes when each range is
// reduced, never what is summed.
//
// Launch order: MPI and NCCL match collectives by the order ranks start them, so every rank must
// start the buckets in one order whatever its data does. The order is fixed from the layout alone:
// buckets whose earliest-created parameter is latest go first (backward makes the last-created
// layers' gradients first), ties by higher index. A bucket is launched only when it is complete
// and every bucket before it in that order has been launched.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t n, bucket, count;  // elements, elements per bucket, buckets
    int64_t *unready;          // [count] elements of each bucket not final yet
    int64_t *order;            // [count] launch order
    int64_t next;              // position in order of the next bucket to launch (count: all launched)
    int ranges;                // the parameters: [start, start + size) in creation order
    int64_t *range_start, *range_size;
    int *by_start;             // range indices sorted by start, for lookups
    bool *range_ready;
} GradientBuckets;

// n elements in buckets of bucket_bytes (f32; 0: 25 MB), covered by `ranges` parameter ranges
// given in creation order (disjoint, inside [0, n)). 0, or -1 (out of memory, bad ranges).
int gradient_buckets_init(GradientBuckets *b, int64_t n, size_t bucket_bytes, int ranges, const int64_t *start,
                          const int64_t *size);
void gradient_buckets_free(GradientBuckets *b);
// Back to "nothing final, nothing launched" for the next step.
void gradient_buckets_reset(GradientBuckets *b);

// Marks one parameter's range final. 0; 1 when [start, start + size) is not one of the ranges;
// 2 when it was already marked since the last reset.
int gradient_buckets_mark_ready(GradientBuckets *b, int64_t start, int64_t size);
// The next bucket to launch, in the fixed order, when it is complete (or regardless, with force);
// -1 when there is none yet (or none left). The caller launches it.
int64_t gradient_buckets_pop(GradientBuckets *b, bool force);
void gradient_buckets_range(const GradientBuckets *b, int64_t k, int64_t *start, int64_t *count);
