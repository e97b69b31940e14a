// Kernels that exercise the CUDA emulator (tests/test_emu.c runs them). The same file is compiled
// by nvcc for sm_80/sm_90 (`make cuda-check`), which proves the emulator accepts only valid CUDA.
// Several kernels carry a deliberate bug ("seeded bug") that the emulator must expose.
#include "kernels/cuda_compat.h"
#include "kernels/emu/tests/emu_test_kernels.h"

// ------------------------------------------------------------------------------------------------
// Block reduction: shared-memory tree with __syncthreads, then a warp-shuffle finish.
// block_sums[b] = sum of the elements block b visits (grid-stride). blockDim.x: power of two, 64..1024.
// ------------------------------------------------------------------------------------------------

__global__ void emu_block_sum_kernel(const float *__restrict__ x, float *__restrict__ block_sums, int n) {
    __shared__ float partial[1024];
    unsigned int t = threadIdx.x;
    float sum = 0.0f;
    for (int i = (int)(blockIdx.x * blockDim.x + t); i < n; i += (int)(gridDim.x * blockDim.x)) sum += x[i];
    partial[t] = sum;
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2; stride >= 32; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
        __syncthreads();
    }
    if (t < 32) {
        float v = partial[t];
        for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
        if (t == 0) block_sums[blockIdx.x] = v;
    }
}
CU_KERNEL_ARGS(emu_block_sum_kernel, const float *, float *, int);

CU_EXTERN_C void emu_block_sum(const float *x, float *block_sums, int n, int blocks, int threads,
                               cudaStream_t stream) {
    CU_LAUNCH(emu_block_sum_kernel, blocks, threads, 0, stream, x, block_sums, n);
}

// Seeded bug: the barrier inside the tree loop is missing, so a thread may read partial[t + stride]
// before its owner added into it. Wrong in forward order, right in reverse (the owners run first).
__global__ void emu_block_sum_missing_sync_kernel(const float *__restrict__ x, float *__restrict__ block_sums,
                                                  int n) {
    __shared__ float partial[1024];
    unsigned int t = threadIdx.x;
    float sum = 0.0f;
    for (int i = (int)(blockIdx.x * blockDim.x + t); i < n; i += (int)(gridDim.x * blockDim.x)) sum += x[i];
    partial[t] = sum;
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2; stride >= 32; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
        // seeded bug: no __syncthreads() here
    }
    __syncthreads();
    if (t < 32) {
        float v = partial[t];
        for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
        if (t == 0) block_sums[blockIdx.x] = v;
    }
}
CU_KERNEL_ARGS(emu_block_sum_missing_sync_kernel, const float *, float *, int);

CU_EXTERN_C void emu_block_sum_missing_sync(const float *x, float *block_sums, int n, int blocks, int threads,
                                            cudaStream_t stream) {
    CU_LAUNCH(emu_block_sum_missing_sync_kernel, blocks, threads, 0, stream, x, block_sums, n);
}

// ------------------------------------------------------------------------------------------------
// Divergent barriers, deadlocks and warp operations with inactive lanes (all seeded bugs).
// ------------------------------------------------------------------------------------------------

// Two different __syncthreads call sites, each in its own helper so the test can learn their lines.
static __device__ void emu_barrier_site_a(void) { __syncthreads(); }
CU_EXTERN_C const int emu_barrier_site_a_line = __LINE__ - 1;
static __device__ void emu_barrier_site_b(void) { __syncthreads(); }
CU_EXTERN_C const int emu_barrier_site_b_line = __LINE__ - 1;

// Seeded bug: threads below 16 wait at one barrier, the others at another.
__global__ void emu_divergent_barrier_kernel(float *out) {
    if (threadIdx.x < 16)
        emu_barrier_site_a();
    else
        emu_barrier_site_b();
    out[threadIdx.x] = 1.0f;
}
CU_KERNEL_ARGS(emu_divergent_barrier_kernel, float *);

CU_EXTERN_C void emu_divergent_barrier(float *out, int threads, cudaStream_t stream) {
    CU_LAUNCH(emu_divergent_barrier_kernel, 1, threads, 0, stream, out);
}

// Seeded bug: a bounds check returns before a barrier the other threads still wait at.
__global__ void emu_early_return_barrier_kernel(float *out, int n) {
    if ((int)threadIdx.x >= n) return;
    emu_barrier_site_a();
    out[threadIdx.x] = 1.0f;
}
CU_KERNEL_ARGS(emu_early_return_barrier_kernel, float *, int);

CU_EXTERN_C void emu_early_return_barrier(float *out, int n, int threads, cudaStream_t stream) {
    CU_LAUNCH(emu_early_return_barrier_kernel, 1, threads, 0, stream, out, n);
}

// Seeded bug: lane 0 waits at __syncthreads while its warp waits for it in a shuffle.
__global__ void emu_warp_deadlock_kernel(float *out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x == 0)
        emu_barrier_site_a();
    else
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}
CU_KERNEL_ARGS(emu_warp_deadlock_kernel, float *);

CU_EXTERN_C void emu_warp_deadlock(float *out, cudaStream_t stream) {
    CU_LAUNCH(emu_warp_deadlock_kernel, 1, 32, 0, stream, out);
}

// Seeded bug: a full-mask shuffle that reads lanes that are not there: in a block whose last warp is
// partial (e.g. 48 threads: lanes 0-15 of warp 1 read lanes 16-31), or after lane exit_lane returned.
__global__ void emu_inactive_lane_shuffle_kernel(float *out, int exit_lane) {
    if ((int)threadIdx.x == exit_lane) return;
    float v = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 16);
    out[threadIdx.x] = v;
}
CU_KERNEL_ARGS(emu_inactive_lane_shuffle_kernel, float *, int);

CU_EXTERN_C void emu_inactive_lane_shuffle(float *out, int threads, int exit_lane, cudaStream_t stream) {
    CU_LAUNCH(emu_inactive_lane_shuffle_kernel, 1, threads, 0, stream, out, exit_lane);
}

// Seeded bugs in warp operations: mode 0: the two halves of the warp make different calls with the
// same mask; 1: a lane passes a mask without its own bit; 2: a shuffle width that is not a power of 2.
__global__ void emu_bad_warp_op_kernel(unsigned int *out, int mode) {
    unsigned int lane = threadIdx.x % 32, result;
    if (mode == 0)
        result = lane < 16 ? __ballot_sync(0xffffffffu, 1) : (unsigned int)__shfl_xor_sync(0xffffffffu, (int)lane, 1);
    else if (mode == 1)
        result = __ballot_sync(0xfffffffeu, 1);
    else
        result = (unsigned int)__shfl_down_sync(0xffffffffu, (int)lane, 1, 12);
    out[threadIdx.x] = result;
}
CU_KERNEL_ARGS(emu_bad_warp_op_kernel, unsigned int *, int);

CU_EXTERN_C void emu_bad_warp_op(unsigned int *out, int mode, cudaStream_t stream) {
    CU_LAUNCH(emu_bad_warp_op_kernel, 1, 32, 0, stream, out, mode);
}

// Correct code: warp-wide sync and votes with a full mask in a partial warp and after a lane returned.
// CUDA waits only for lanes that have not exited, so out[t] = the lanes still running in t's warp.
__global__ void emu_partial_warp_vote_kernel(unsigned int *out, int exit_lane) {
    if ((int)threadIdx.x == exit_lane) return;
    __syncwarp();
    unsigned int running = __ballot_sync(0xffffffffu, 1);
    if (__all_sync(0xffffffffu, 1) && __any_sync(0xffffffffu, 1)) out[threadIdx.x] = running;
}
CU_KERNEL_ARGS(emu_partial_warp_vote_kernel, unsigned int *, int);

CU_EXTERN_C void emu_partial_warp_vote(unsigned int *out, int threads, int exit_lane, cudaStream_t stream) {
    CU_LAUNCH(emu_partial_warp_vote_kernel, 1, threads, 0, stream, out, exit_lane);
}

// ------------------------------------------------------------------------------------------------
// Shared memory poison, dynamic shared memory, out-of-bounds writes.
// ------------------------------------------------------------------------------------------------

// Seeded bug: only the first `valid` threads of blocks after the first fill the tile, yet every
// thread reads its element. Block 0 fills it all, so without poisoning before every block, block 1
// would read block 0's leftovers instead of garbage.
__global__ void emu_uninitialized_shared_kernel(float *out, int valid) {
    __shared__ float tile[256];
    int limit = blockIdx.x == 0 ? (int)blockDim.x : valid;
    if ((int)threadIdx.x < limit) tile[threadIdx.x] = 1.0f + (float)blockIdx.x;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = tile[threadIdx.x];
}
CU_KERNEL_ARGS(emu_uninitialized_shared_kernel, float *, int);

CU_EXTERN_C void emu_uninitialized_shared(float *out, int valid, int blocks, int threads, cudaStream_t stream) {
    CU_LAUNCH(emu_uninitialized_shared_kernel, blocks, threads, 0, stream, out, valid);
}

// Reverses each block's slice of x through dynamic shared memory; with `skip` > 0 the first `skip`
// threads do not write their slot (the readers of those slots then see the poison).
__global__ void emu_dynamic_shared_reverse_kernel(const float *__restrict__ x, float *__restrict__ y, int skip) {
    CU_DYNAMIC_SHARED(float, buffer);
    unsigned int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    if ((int)t >= skip) buffer[t] = x[i];
    __syncthreads();
    y[i] = buffer[blockDim.x - 1 - t];
}
CU_KERNEL_ARGS(emu_dynamic_shared_reverse_kernel, const float *, float *, int);

CU_EXTERN_C void emu_dynamic_shared_reverse(const float *x, float *y, int skip, int blocks, int threads,
                                            size_t shared_bytes, cudaStream_t stream) {
    CU_LAUNCH(emu_dynamic_shared_reverse_kernel, blocks, threads, shared_bytes, stream, x, y, skip);
}

// Raises the kernel's dynamic shared memory limit, as a launcher does before a big-tile launch.
CU_EXTERN_C int emu_dynamic_shared_reverse_allow(int bytes) {
#ifdef __CUDACC__
    return (int)cudaFuncSetAttribute(emu_dynamic_shared_reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     bytes);
#else
    return (int)cuemu_func_set_max_dynamic_shared_size((const void *)emu_dynamic_shared_reverse_kernel, (size_t)bytes);
#endif
}

// Seeded bug: `<=` where `<` was meant writes one element past the end of `out`.
__global__ void emu_out_of_bounds_write_kernel(float *out, int n) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i <= n) out[i] = 1.0f;
}
CU_KERNEL_ARGS(emu_out_of_bounds_write_kernel, float *, int);

CU_EXTERN_C void emu_out_of_bounds_write(float *out, int n, cudaStream_t stream) {
    CU_LAUNCH(emu_out_of_bounds_write_kernel, (n + 127) / 128 + 1, 128, 0, stream, out, n);
}

// Seeded bug: one thread more than the shared array has elements. The store goes through a helper
// that cannot see the array, as in real kernels, so AddressSanitizer's redzones around __shared__
// variables catch it (UBSan's bounds checks would otherwise stop it first).
static __device__ __noinline__ void emu_store(float *slot, float value) { *slot = value; }

__global__ void emu_shared_overflow_kernel(float *out) {
    __shared__ float tile[64];
    emu_store(tile + threadIdx.x, (float)threadIdx.x);
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x % 64];
}
CU_KERNEL_ARGS(emu_shared_overflow_kernel, float *);

CU_EXTERN_C void emu_shared_overflow(float *out, int threads, cudaStream_t stream) {
    CU_LAUNCH(emu_shared_overflow_kernel, 1, threads, 0, stream, out);
}

// Seeded bug: recursion deep enough to overflow the thread's stack (about 1 KiB per level).
static __device__ float emu_recurse(int depth) {
    volatile float pad[256];
    pad[depth % 256] = (float)depth;
    return depth > 0 ? emu_recurse(depth - 1) + pad[depth % 256] : 0.0f;
}

__global__ void emu_deep_recursion_kernel(float *out, int depth) { out[threadIdx.x] = emu_recurse(depth); }
CU_KERNEL_ARGS(emu_deep_recursion_kernel, float *, int);

CU_EXTERN_C void emu_deep_recursion(float *out, int depth, int threads, cudaStream_t stream) {
    CU_LAUNCH(emu_deep_recursion_kernel, 1, threads, 0, stream, out, depth);
}

// ------------------------------------------------------------------------------------------------
// Indices in 2-D/3-D grids and blocks: each thread records who it is.
// ------------------------------------------------------------------------------------------------

// out[6 * g + k] for global linear thread g: blockIdx.{x,y,z}, threadIdx.{x,y,z}; also each value
// is read again after a barrier, which would show a stale threadIdx after a fiber switch.
__global__ void emu_index_kernel(int *out) {
    unsigned int block_linear = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned int thread_linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned int threads = blockDim.x * blockDim.y * blockDim.z;
    unsigned int g = block_linear * threads + thread_linear;
    unsigned int tx = threadIdx.x, ty = threadIdx.y, tz = threadIdx.z;
    __syncthreads();
    int same = tx == threadIdx.x && ty == threadIdx.y && tz == threadIdx.z;
    out[6 * g + 0] = (int)blockIdx.x;
    out[6 * g + 1] = (int)blockIdx.y;
    out[6 * g + 2] = (int)blockIdx.z;
    out[6 * g + 3] = same ? (int)threadIdx.x : -2;
    out[6 * g + 4] = same ? (int)threadIdx.y : -2;
    out[6 * g + 5] = same ? (int)threadIdx.z : -2;
}
CU_KERNEL_ARGS(emu_index_kernel, int *);

CU_EXTERN_C void emu_index(int *out, int grid_x, int grid_y, int grid_z, int block_x, int block_y, int block_z,
                           cudaStream_t stream) {
    CU_LAUNCH(emu_index_kernel, DIM3(grid_x, grid_y, grid_z), DIM3(block_x, block_y, block_z), 0, stream, out);
}

// ------------------------------------------------------------------------------------------------
// Warp operations: shuffles of every kind and width, votes, warp reductions, barrier reductions.
// ------------------------------------------------------------------------------------------------

// For lane l (one warp per block): out_* [k * 32 + l] is the shuffle k of the lane's value:
// k = 0 idx(src = 3 * l + 1), 1 up(delta 3), 2 down(delta 5), 3 xor(mask 6) with width 32, then
// k = 4..7 the same with width 8. float: lane + 0.5; int: -lane; double: 1000 + lane.
__global__ void emu_shuffle_kernel(float *out_float, int *out_int, double *out_double) {
    int lane = (int)threadIdx.x;
    float f = (float)lane + 0.5f;
    int i = -lane;
    double d = 1000.0 + lane;
    out_float[0 * 32 + lane] = __shfl_sync(0xffffffffu, f, 3 * lane + 1);
    out_float[1 * 32 + lane] = __shfl_up_sync(0xffffffffu, f, 3);
    out_float[2 * 32 + lane] = __shfl_down_sync(0xffffffffu, f, 5);
    out_float[3 * 32 + lane] = __shfl_xor_sync(0xffffffffu, f, 6);
    out_float[4 * 32 + lane] = __shfl_sync(0xffffffffu, f, 3 * lane + 1, 8);
    out_float[5 * 32 + lane] = __shfl_up_sync(0xffffffffu, f, 3, 8);
    out_float[6 * 32 + lane] = __shfl_down_sync(0xffffffffu, f, 5, 8);
    out_float[7 * 32 + lane] = __shfl_xor_sync(0xffffffffu, f, 6, 8);
    out_int[0 * 32 + lane] = __shfl_sync(0xffffffffu, i, 3 * lane + 1);
    out_int[1 * 32 + lane] = __shfl_up_sync(0xffffffffu, i, 3);
    out_int[2 * 32 + lane] = __shfl_down_sync(0xffffffffu, i, 5);
    out_int[3 * 32 + lane] = __shfl_xor_sync(0xffffffffu, i, 6);
    out_int[4 * 32 + lane] = __shfl_sync(0xffffffffu, i, 3 * lane + 1, 8);
    out_int[5 * 32 + lane] = __shfl_up_sync(0xffffffffu, i, 3, 8);
    out_int[6 * 32 + lane] = __shfl_down_sync(0xffffffffu, i, 5, 8);
    out_int[7 * 32 + lane] = __shfl_xor_sync(0xffffffffu, i, 6, 8);
    out_double[0 * 32 + lane] = __shfl_sync(0xffffffffu, d, 3 * lane + 1);
    out_double[1 * 32 + lane] = __shfl_up_sync(0xffffffffu, d, 3);
    out_double[2 * 32 + lane] = __shfl_down_sync(0xffffffffu, d, 5);
    out_double[3 * 32 + lane] = __shfl_xor_sync(0xffffffffu, d, 6);
    out_double[4 * 32 + lane] = __shfl_sync(0xffffffffu, d, 3 * lane + 1, 8);
    out_double[5 * 32 + lane] = __shfl_up_sync(0xffffffffu, d, 3, 8);
    out_double[6 * 32 + lane] = __shfl_down_sync(0xffffffffu, d, 5, 8);
    out_double[7 * 32 + lane] = __shfl_xor_sync(0xffffffffu, d, 6, 8);
}
CU_KERNEL_ARGS(emu_shuffle_kernel, float *, int *, double *);

CU_EXTERN_C void emu_shuffle(float *out_float, int *out_int, double *out_double, cudaStream_t stream) {
    CU_LAUNCH(emu_shuffle_kernel, 1, 32, 0, stream, out_float, out_int, out_double);
}

// Half the warp shuffles among itself with a 16-lane mask; lane 15 reads lane 16, outside the mask.
__global__ void emu_partial_mask_shuffle_kernel(float *out) {
    unsigned int lane = threadIdx.x;
    if (lane < 16) out[lane] = __shfl_down_sync(0x0000ffffu, (float)lane, 1);
}
CU_KERNEL_ARGS(emu_partial_mask_shuffle_kernel, float *);

CU_EXTERN_C void emu_partial_mask_shuffle(float *out, cudaStream_t stream) {
    CU_LAUNCH(emu_partial_mask_shuffle_kernel, 1, 32, 0, stream, out);
}

// One record of 10 ints per warp: ballot, any, all, activemask, reduce add/min/max (int), reduce
// and/or/xor (unsigned); one record of 3 per block: __syncthreads_count/_and/_or.
__global__ void emu_vote_kernel(const int *__restrict__ flags, int *__restrict__ warp_records,
                                int *__restrict__ block_records) {
    unsigned int t = threadIdx.x, global = blockIdx.x * blockDim.x + t;
    unsigned int warp = global / 32;
    int flag = flags[global];
    unsigned int ballot = __ballot_sync(0xffffffffu, flag);
    int any = __any_sync(0xffffffffu, flag);
    int all = __all_sync(0xffffffffu, flag);
    unsigned int active = __activemask();
    int value = flag ? (int)t : -(int)t;
    int sum = __reduce_add_sync(0xffffffffu, value);
    int smallest = __reduce_min_sync(0xffffffffu, value);
    int largest = __reduce_max_sync(0xffffffffu, value);
    unsigned int bits = 1u << (t % 32) | (unsigned int)flag << 31;
    unsigned int and_bits = __reduce_and_sync(0xffffffffu, bits);
    unsigned int or_bits = __reduce_or_sync(0xffffffffu, bits);
    unsigned int xor_bits = __reduce_xor_sync(0xffffffffu, bits);
    if (t % 32 == 0) {
        int *record = warp_records + 10 * warp;
        record[0] = (int)ballot;
        record[1] = any;
        record[2] = all;
        record[3] = (int)active;
        record[4] = sum;
        record[5] = smallest;
        record[6] = largest;
        record[7] = (int)and_bits;
        record[8] = (int)or_bits;
        record[9] = (int)xor_bits;
    }
    int count = __syncthreads_count(flag);
    int every = __syncthreads_and(flag);
    int some = __syncthreads_or(flag);
    if (t == 0) {
        block_records[3 * blockIdx.x + 0] = count;
        block_records[3 * blockIdx.x + 1] = every;
        block_records[3 * blockIdx.x + 2] = some;
    }
}
CU_KERNEL_ARGS(emu_vote_kernel, const int *, int *, int *);

CU_EXTERN_C void emu_vote(const int *flags, int *warp_records, int *block_records, int blocks, int threads,
                          cudaStream_t stream) {
    CU_LAUNCH(emu_vote_kernel, blocks, threads, 0, stream, flags, warp_records, block_records);
}

// ------------------------------------------------------------------------------------------------
// Atomics from many blocks.
// ------------------------------------------------------------------------------------------------

// Accumulates over all threads g of the grid: f32 sum of x[g]; i32 sum of g % 7 - 3; u32 count;
// u64 sum of g * 2^20; max and min of (g * 7919) % 10007 - 5000 (i32), the same plus 2^40 (i64,
// u64 min); float max through an atomicCAS loop; atomicExch of the last writer (any valid g);
// a u32 counter through atomicInc wrapping at 999; bitwise or/and/xor of 1 << (g % 32).

static __device__ float emu_atomic_max_float(float *address, float value) {
    // The portable float max: a compare-and-swap loop on the bit pattern.
    unsigned int *bits = (unsigned int *)address;
    unsigned int old = *bits, assumed;
    do {
        assumed = old;
        if (__uint_as_float(assumed) >= value) break;
        old = atomicCAS(bits, assumed, __float_as_uint(value));
    } while (old != assumed);
    return __uint_as_float(old);
}

__global__ void emu_atomics_kernel(const float *__restrict__ x, emu_atomic_totals *totals, int n) {
    int g = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (g >= n) return;
    int scrambled = (g * 7919) % 10007 - 5000;
    atomicAdd(&totals->sum_f32, x[g]);
    atomicAdd(&totals->sum_i32, g % 7 - 3);
    atomicAdd(&totals->count_u32, 1u);
    atomicAdd(&totals->sum_u64, (unsigned long long)g << 20);
    atomicMax(&totals->max_i32, scrambled);
    atomicMin(&totals->min_i32, scrambled);
    atomicMax(&totals->max_i64, (long long)scrambled + (1ll << 40));
    atomicMin(&totals->min_u64, (unsigned long long)(scrambled + 5000) + (1ull << 40));
    emu_atomic_max_float(&totals->max_f32, x[g]);
    atomicExch(&totals->exchanged, g);
    atomicInc(&totals->wrapped, 999u);
    atomicOr(&totals->or_bits, 1u << (g % 32));
    atomicAnd(&totals->and_bits, ~(1u << (g % 32)));
    atomicXor(&totals->xor_bits, 1u << (g % 32));
    atomicAdd(&totals->sum_f64, (double)x[g]);
    atomicSub(&totals->sub_i32, 2);
    atomicMin(&totals->min_u32, (unsigned int)(scrambled + 5000));
    atomicMax(&totals->max_u32, (unsigned int)(scrambled + 5000));
}
CU_KERNEL_ARGS(emu_atomics_kernel, const float *, emu_atomic_totals *, int);

CU_EXTERN_C void emu_atomics(const float *x, emu_atomic_totals *totals, int n, int threads, cudaStream_t stream) {
    CU_LAUNCH(emu_atomics_kernel, (n + threads - 1) / threads, threads, 0, stream, x, totals, n);
}

// ------------------------------------------------------------------------------------------------
// Math intrinsics, fp16/bf16 conversions, min/max, argument plumbing.
// ------------------------------------------------------------------------------------------------

enum { EMU_MATH_RESULTS = 16 };

// out[16 * i + k]: the intrinsics applied to x[i] (x > 0).
__global__ void emu_math_kernel(const float *__restrict__ x, float *__restrict__ out, int n) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    float v = x[i];
    float *o = out + EMU_MATH_RESULTS * i;
    o[0] = __expf(v);
    o[1] = __logf(v);
    o[2] = rsqrtf(v);
    o[3] = __fdividef(1.0f, v);
    o[4] = fmaf(v, 2.0f, 1.0f);
    o[5] = __frcp_rn(v);
    o[6] = __saturatef(v - 1.0f);
    o[7] = (float)__float2int_rn(v * 3.0f);
    o[8] = erff(v - 1.0f);
    o[9] = tanhf(v - 1.0f);
    o[10] = __powf(v, 1.5f);
    o[11] = __sinf(v) + __cosf(v);
    o[12] = fminf(v, 1.0f) + max(2, (int)v) + (float)min(3u, (unsigned int)v);
    o[13] = __int_as_float(__float_as_int(v));
    o[14] = (float)__popc(__float_as_uint(v)) + (float)__clz((int)v);
    o[15] = __log2f(v) + __exp10f(v - 1.0f);
}
CU_KERNEL_ARGS(emu_math_kernel, const float *, float *, int);

CU_EXTERN_C void emu_math(const float *x, float *out, int n, cudaStream_t stream) {
    CU_LAUNCH(emu_math_kernel, (n + 63) / 64, 64, 0, stream, x, out, n);
}

// Round trip through the storage types: h[i] = half(x[i]), b[i] = bf16(x[i]), back[2i..] = floats.
__global__ void emu_half_kernel(const float *__restrict__ x, cu_half *__restrict__ h, cu_bfloat16 *__restrict__ b,
                                float *__restrict__ back, int n) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    h[i] = cu_float_to_half(x[i]);
    b[i] = cu_float_to_bfloat16(x[i]);
    back[2 * i] = cu_half_to_float(h[i]);
    back[2 * i + 1] = cu_bfloat16_to_float(b[i]);
}
CU_KERNEL_ARGS(emu_half_kernel, const float *, cu_half *, cu_bfloat16 *, float *, int);

CU_EXTERN_C void emu_half(const float *x, cu_half *h, cu_bfloat16 *b, float *back, int n, cudaStream_t stream) {
    CU_LAUNCH(emu_half_kernel, (n + 255) / 256, 256, 0, stream, x, h, b, back, n);
}

// Sixteen parameters of assorted types (the most CU_KERNEL_ARGS takes); out = a weighted sum.
typedef struct emu_pair {
    int first;
    float second;
} emu_pair;

__global__ void emu_sixteen_args_kernel(double *out, char a, short b, int c, long d, long long e, unsigned int f,
                                        unsigned long g, float h, double i, emu_pair j, const int *k, size_t l,
                                        unsigned char m, signed char n, unsigned short o) {
    if (threadIdx.x != 0) return;
    *out = (double)a + 2.0 * b + 3.0 * c + 4.0 * (double)d + 5.0 * (double)e + 6.0 * f + 7.0 * (double)g + 8.0 * h +
           9.0 * i + 10.0 * j.first + 11.0 * j.second + 12.0 * k[0] + 13.0 * (double)l + 14.0 * m + 15.0 * n +
           16.0 * o;
}
CU_KERNEL_ARGS(emu_sixteen_args_kernel, double *, char, short, int, long, long long, unsigned int, unsigned long,
               float, double, emu_pair, const int *, size_t, unsigned char, signed char, unsigned short);

__global__ void emu_no_args_kernel(void) {}
CU_KERNEL_ARGS(emu_no_args_kernel);

CU_EXTERN_C void emu_sixteen_args(double *out, const int *k, cudaStream_t stream) {
    emu_pair pair;
    pair.first = 10;
    pair.second = 0.5f;
    CU_LAUNCH(emu_sixteen_args_kernel, 1, 2, 0, stream, out, (char)1, (short)2, 3, 4l, 5ll, 6u, 7ul, 8.0f, 9.0, pair,
              k, (size_t)13, (unsigned char)14, (signed char)-15, (unsigned short)16);
    CU_LAUNCH(emu_no_args_kernel, 1, 1, 0, stream);
}

// A launch with the given configuration (the test passes invalid ones and reads the error).
CU_EXTERN_C void emu_launch_config(int *out, int grid_x, int grid_y, int block_x, int block_y, int block_z,
                                   size_t shared_bytes, cudaStream_t stream) {
    CU_LAUNCH(emu_index_kernel, DIM3(grid_x, grid_y, 1), DIM3(block_x, block_y, block_z), shared_bytes, stream, out);
}

// ------------------------------------------------------------------------------------------------
// Architecture-specific code with its plain fallback, as the kernel-source rules require.
// ------------------------------------------------------------------------------------------------

// out[i] = the lane id of thread i. On the GPU from the %laneid register; the fallback below is what
// the emulator runs and the test checks.
__global__ void emu_lane_id_kernel(int *out) {
    unsigned int lane;
#ifdef __CUDA_ARCH__
    asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
#else
    lane = threadIdx.x % 32;
#endif
    out[threadIdx.x] = (int)lane;
}
CU_KERNEL_ARGS(emu_lane_id_kernel, int *);

CU_EXTERN_C void emu_lane_id(int *out, int threads, cudaStream_t stream) {
    CU_LAUNCH(emu_lane_id_kernel, 1, threads, 0, stream, out);
}
