// Launchers of the emulator's test kernels (kernels/emu/tests/emu_test_kernels.cu), for host C code
// (tests/test_emu.c) and for the .cu itself, so that both builds check the prototypes.
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

// Results of emu_atomics; see the kernel for what each field accumulates.
typedef struct emu_atomic_totals {
    float sum_f32;
    int sum_i32;
    unsigned int count_u32;
    unsigned long long sum_u64;
    int max_i32, min_i32;
    long long max_i64;
    unsigned long long min_u64;
    float max_f32;
    int exchanged;
    unsigned int wrapped;
    unsigned int or_bits, and_bits, xor_bits;
    double sum_f64;
    int sub_i32;
    unsigned int min_u32, max_u32;
} emu_atomic_totals;

// Lines of the two __syncthreads() call sites the divergence tests expect in the report.
extern const int emu_barrier_site_a_line;
extern const int emu_barrier_site_b_line;

void emu_block_sum(const float *x, float *block_sums, int n, int blocks, int threads, cudaStream_t stream);
void emu_block_sum_missing_sync(const float *x, float *block_sums, int n, int blocks, int threads,
                                cudaStream_t stream);
void emu_divergent_barrier(float *out, int threads, cudaStream_t stream);
void emu_early_return_barrier(float *out, int n, int threads, cudaStream_t stream);
void emu_warp_deadlock(float *out, cudaStream_t stream);
void emu_inactive_lane_shuffle(float *out, int threads, int exit_lane, cudaStream_t stream);
void emu_bad_warp_op(unsigned int *out, int mode, cudaStream_t stream);
void emu_partial_warp_vote(unsigned int *out, int threads, int exit_lane, cudaStream_t stream);
void emu_uninitialized_shared(float *out, int valid, int blocks, int threads, cudaStream_t stream);
void emu_dynamic_shared_reverse(const float *x, float *y, int skip, int blocks, int threads, size_t shared_bytes,
                                cudaStream_t stream);
int emu_dynamic_shared_reverse_allow(int bytes);
void emu_out_of_bounds_write(float *out, int n, cudaStream_t stream);
void emu_shared_overflow(float *out, int threads, cudaStream_t stream);
void emu_deep_recursion(float *out, int depth, int threads, cudaStream_t stream);
void emu_index(int *out, int grid_x, int grid_y, int grid_z, int block_x, int block_y, int block_z,
               cudaStream_t stream);
void emu_shuffle(float *out_float, int *out_int, double *out_double, cudaStream_t stream);
void emu_partial_mask_shuffle(float *out, cudaStream_t stream);
void emu_vote(const int *flags, int *warp_records, int *block_records, int blocks, int threads, cudaStream_t stream);
void emu_atomics(const float *x, emu_atomic_totals *totals, int n, int threads, cudaStream_t stream);
void emu_math(const float *x, float *out, int n, cudaStream_t stream);
void emu_sixteen_args(double *out, const int *k, cudaStream_t stream);
void emu_launch_config(int *out, int grid_x, int grid_y, int block_x, int block_y, int block_z,
                       size_t shared_bytes, cudaStream_t stream);
void emu_lane_id(int *out, int threads, cudaStream_t stream);

// fp16/bf16 round trip; h and b point to 16-bit words (cu_half / cu_bfloat16 in kernel code).
struct cu_half;
struct cu_bfloat16;
void emu_half(const float *x, struct cu_half *h, struct cu_bfloat16 *b, float *back, int n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
