// Tests for the device runtime (engine/gpu/gpu.h) on the emulated device (gpu_emulated.c +
// kernels/emu): the caching allocator (size classes, reuse, statistics, limit, out-of-memory and
// misuse messages), poisoned fresh memory, copies, streams and events, a kernel launch through
// CU_LAUNCH with its error check, and the cuBLAS/cuDNN wrappers against references on the CPU.
//
// The library checks are written as they would be for real cuBLAS/cuDNN (tolerances, not bitwise):
// GEMM against a naive double-accumulated product with
//   |C - (alpha * sum_k a_ik b_kj + beta * C0)| <= 1e-5 * (|alpha| sum_k |a_ik b_kj| + |beta C0|) + 1e-30
// (f32 accumulation in an order of the library's own: a small multiple of 2^-24 times sum |a b|);
// convolutions against engine/ops.h's op_conv2d forward and autograd backward, |got - want| <=
// 1e-4 + 1e-4 |want| (sums of at most a few hundred O(1) products, f32 in different orders).
// Device outputs start as NaN poison, so an element a wrapper leaves unwritten fails.
#include "engine/autograd.h"
#include "engine/gpu/gpu.h"
#include "engine/gpu/gpu_allocator.h"  // gpu_block_size
#include "engine/ops.h"
#include "engine/tensor.h"
#include "tests/check.h"
#include "tests/expect_fatal.h"
// Last: it defines kernel-side macros (min, max, ...); the test kernel below is compiled through it,
// as kernels/*.cu are for the emulated device.
#include "kernels/emu/cuemu.h"

TEST_MAIN_COUNTERS;

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float random_float(void) {  // uniform in [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1ull << 23)) - 1.0);
}

static float *random_floats(int64_t count) {
    float *values = malloc((size_t)(count ? count : 1) * sizeof(float));
    for (int64_t i = 0; i < count; i++) values[i] = random_float();
    return values;
}

// A device copy of `count` host floats.
static float *to_device(const float *host, int64_t count) {
    float *device = gpu_alloc((size_t)count * sizeof(float));
    gpu_copy_to_device(device, host, (size_t)count * sizeof(float));
    return device;
}

static float *to_host(const float *device, int64_t count) {
    float *host = malloc((size_t)(count ? count : 1) * sizeof(float));
    gpu_copy_to_host(host, device, (size_t)count * sizeof(float));
    return host;
}

// ---------------------------------------------------------------- device and allocator

TEST(emulated_device_identity) {
    CHECK(gpu_device_count() == 1);
    CHECK(strcmp(gpu_backend_name(), "emulated") == 0);
    CHECK(strcmp(gpu_device_name(), "emulated CUDA device (CPU)") == 0);
    char error[256] = "";
    CHECK(gpu_select(0, error, sizeof error) == 0);
    CHECK(gpu_current_device() == 0);
    CHECK(gpu_select(1, error, sizeof error) == -1);
    CHECK_MSG(strstr(error, "no CUDA device 1") != NULL, "message: %s", error);
}

TEST(block_sizes_round_up_by_at_most_a_quarter) {
    CHECK(gpu_block_size(1) == 512);
    CHECK(gpu_block_size(512) == 512);
    CHECK(gpu_block_size(513) == 640);
    CHECK(gpu_block_size(1024) == 1024);
    CHECK(gpu_block_size(1025) == 1280);
    CHECK(gpu_block_size(3000) == 3072);
    CHECK(gpu_block_size((size_t)1 << 30) == (size_t)1 << 30);
    CHECK(gpu_block_size(SIZE_MAX) == 0);  // unrepresentable: reported as out of memory
    int bad = 0;
    size_t previous = 0;
    for (size_t bytes = 1; bytes < ((size_t)1 << 40); bytes = bytes * 5 / 4 + 7) {
        size_t block = gpu_block_size(bytes);
        bad += block < bytes || (bytes > 512 && block > bytes + bytes / 4) || block < previous || block % 128 != 0;
        previous = block;
    }
    CHECK(bad == 0);
}

TEST(allocator_reuses_freed_blocks_and_counts) {
    gpu_cache_release_all();
    GpuMemoryStats start = gpu_memory_stats();
    CHECK(start.bytes_in_use == 0 && start.bytes_cached == 0);
    CHECK(gpu_alloc(0) == NULL);
    gpu_free(NULL);

    float *a = gpu_alloc(1000);  // block 1024
    CHECK(((uintptr_t)a & 63) == 0);
    GpuMemoryStats s = gpu_memory_stats();
    CHECK(s.bytes_in_use == 1024 && s.device_allocs == start.device_allocs + 1);
    gpu_free(a);
    s = gpu_memory_stats();
    CHECK(s.bytes_in_use == 0 && s.bytes_cached == 1024);

    float *b = gpu_alloc(900);  // same class: the cached block comes back
    s = gpu_memory_stats();
    CHECK(b == a);
    CHECK(s.cache_hits == start.cache_hits + 1 && s.device_allocs == start.device_allocs + 1);
    CHECK(s.bytes_cached == 0 && s.bytes_in_use == 1024);

    float *c = gpu_alloc(5000);  // another class: from the device
    s = gpu_memory_stats();
    CHECK(c != a && s.device_allocs == start.device_allocs + 2);
    CHECK(s.bytes_in_use == 1024 + 5120 && s.peak_bytes_in_use >= 1024 + 5120);
    gpu_free(b);
    gpu_free(c);
    gpu_memory_reset_peak();
    s = gpu_memory_stats();
    CHECK(s.peak_bytes_in_use == 0 && s.bytes_cached == 1024 + 5120);
    CHECK(s.alloc_calls == start.alloc_calls + 3);

    // Many live blocks of one size (the block table grows past its first size), all distinct.
    enum { MANY = 3000 };
    void **blocks = malloc(MANY * sizeof *blocks);
    for (int i = 0; i < MANY; i++) blocks[i] = gpu_alloc(64);
    int duplicates = 0;
    for (int i = 1; i < MANY; i++) duplicates += blocks[i] == blocks[i - 1];
    CHECK(duplicates == 0);
    CHECK(gpu_memory_stats().bytes_in_use == (size_t)MANY * 512);
    for (int i = 0; i < MANY; i++) gpu_free(blocks[i]);
    free(blocks);

    gpu_cache_release_all();
    s = gpu_memory_stats();
    CHECK(s.bytes_cached == 0 && s.bytes_in_use == 0);
    CHECK(s.device_frees - start.device_frees == s.device_allocs - start.device_allocs);
}

TEST(fresh_device_memory_is_nan_poisoned) {
    enum { COUNT = 300 };
    float *a = gpu_alloc(COUNT * sizeof(float));
    float host[COUNT];
    gpu_copy_to_host(host, a, sizeof host);
    int not_nan = 0;
    for (int i = 0; i < COUNT; i++) not_nan += !isnan(host[i]);
    CHECK(not_nan == 0);
    // Written, freed and handed out again: poisoned again, not the old values.
    for (int i = 0; i < COUNT; i++) host[i] = (float)i;
    gpu_copy_to_device(a, host, sizeof host);
    gpu_free(a);
    float *b = gpu_alloc(COUNT * sizeof(float));
    CHECK(b == a);
    gpu_copy_to_host(host, b, sizeof host);
    not_nan = 0;
    for (int i = 0; i < COUNT; i++) not_nan += !isnan(host[i]);
    CHECK(not_nan == 0);
    gpu_free(b);
}

TEST(memory_limit_releases_the_cache_and_retries) {
    gpu_cache_release_all();
    gpu_set_memory_limit(8192);
    void *a = gpu_alloc(4096);
    gpu_free(a);  // 4 KiB cached
    GpuMemoryStats before = gpu_memory_stats();
    void *b = gpu_alloc(6000);  // block 6144: fits only once the cached 4 KiB are returned
    GpuMemoryStats after = gpu_memory_stats();
    CHECK(b != NULL);
    CHECK(after.bytes_cached == 0 && after.bytes_in_use == 6144);
    CHECK(after.device_frees == before.device_frees + 1);
    CHECK(after.memory_limit == 8192);
    gpu_free(b);
    gpu_set_memory_limit(0);
    gpu_cache_release_all();
}

static void allocate_past_the_limit(void *context) {
    (void)context;
    gpu_set_memory_limit((size_t)1 << 20);
    void *kept = gpu_alloc((size_t)512 << 10);
    void *freed = gpu_alloc(1000);
    gpu_free(freed);
    gpu_alloc((size_t)2 << 20);  // more than the limit by itself
    gpu_free(kept);
}

static void allocate_everything(void *context) {
    (void)context;
    gpu_alloc(SIZE_MAX);
}

static void free_twice(void *context) {
    (void)context;
    void *a = gpu_alloc(100);
    gpu_free(a);
    gpu_free(a);
}

static void free_a_host_pointer(void *context) {
    (void)context;
    int on_the_host = 0;
    gpu_free(&on_the_host);
}

TEST(out_of_memory_and_misuse_stop_with_one_line) {
    CHECK(expect_fatal(allocate_past_the_limit, NULL,
                       "requested 2.00 MiB (block 2.00 MiB) on emulated CUDA device (CPU) with 512.00 KiB in use and "
                       "1.00 KiB cached (released and retried), limit 1.00 MiB"));
    CHECK(expect_fatal(allocate_past_the_limit, NULL, "out of device memory at tests/test_gpu_runtime.c:"));
    CHECK(expect_fatal(allocate_everything, NULL, "(block too large)"));
    CHECK(expect_fatal(free_twice, NULL, "freed twice"));
    CHECK(expect_fatal(free_a_host_pointer, NULL, "is not a block from gpu_alloc"));
}

// ---------------------------------------------------------------- copies, streams, events

TEST(copies_round_trip) {
    enum { COUNT = 1001 };
    float *host = random_floats(COUNT), back[COUNT];
    float *a = to_device(host, COUNT), *b = gpu_alloc(COUNT * sizeof(float));
    gpu_copy_device_to_device(b, a, COUNT * sizeof(float));
    gpu_copy_to_host(back, b, sizeof back);
    CHECK(memcmp(back, host, sizeof back) == 0);

    // Async copies through pinned staging buffers on a stream of their own.
    GpuStream *stream = gpu_stream_create();
    float *pinned_in = gpu_host_alloc(COUNT * sizeof(float)), *pinned_out = gpu_host_alloc(COUNT * sizeof(float));
    CHECK(((uintptr_t)pinned_in & 63) == 0);
    for (int i = 0; i < COUNT; i++) pinned_in[i] = -host[i];
    gpu_copy_to_device_async(a, pinned_in, COUNT * sizeof(float), stream);
    gpu_copy_device_to_device_async(b, a, COUNT * sizeof(float), stream);
    gpu_memset_async(a, 0, COUNT * sizeof(float), stream);
    gpu_copy_to_host_async(pinned_out, b, COUNT * sizeof(float), stream);
    gpu_stream_synchronize(stream);
    CHECK(memcmp(pinned_out, pinned_in, COUNT * sizeof(float)) == 0);
    gpu_copy_to_host_async(pinned_out, a, COUNT * sizeof(float), stream);
    gpu_stream_synchronize(stream);
    int nonzero = 0;
    for (int i = 0; i < COUNT; i++) nonzero += pinned_out[i] != 0.0f;
    CHECK(nonzero == 0);
    gpu_copy_to_device(a, host, 0);  // zero-byte copies are valid calls
    gpu_copy_to_host_async(back, a, 0, NULL);
    gpu_host_free(pinned_in);
    gpu_host_free(pinned_out);
    gpu_stream_destroy(stream);
    gpu_free(a);
    gpu_free(b);
    free(host);
}

TEST(streams_and_events_order_work) {
    enum { COUNT = 257 };
    float *host = random_floats(COUNT), back[COUNT];
    GpuStream *producer = gpu_stream_create(), *consumer = gpu_stream_create();
    CHECK(gpu_stream_default() != NULL && gpu_stream_default() == gpu_stream_default());
    CHECK(gpu_stream_handle(gpu_stream_default()) == NULL);
    GpuEvent *start = gpu_event_create(), *uploaded = gpu_event_create(), *done = gpu_event_create();
    float *a = gpu_alloc(COUNT * sizeof(float)), *b = gpu_alloc(COUNT * sizeof(float));
    gpu_event_record(start, producer);
    gpu_copy_to_device_async(a, host, sizeof back, producer);
    gpu_event_record(uploaded, producer);
    gpu_stream_wait_event(consumer, uploaded);  // the consumer's copy must see the upload
    gpu_copy_device_to_device_async(b, a, sizeof back, consumer);
    gpu_copy_to_host_async(back, b, sizeof back, consumer);
    gpu_event_record(done, consumer);
    gpu_event_synchronize(done);
    CHECK(memcmp(back, host, sizeof back) == 0);
    float upload_ms = gpu_event_elapsed_ms(start, uploaded), total_ms = gpu_event_elapsed_ms(start, done);
    CHECK(upload_ms >= 0.0f && total_ms >= upload_ms);  // host-clock times: only their order means anything
    gpu_synchronize();
    gpu_event_destroy(start);
    gpu_event_destroy(uploaded);
    gpu_event_destroy(done);
    gpu_stream_destroy(producer);
    gpu_stream_destroy(consumer);
    gpu_free(a);
    gpu_free(b);
    free(host);
}

static void elapsed_of_unrecorded_event(void *context) {
    (void)context;
    GpuEvent *a = gpu_event_create(), *b = gpu_event_create();
    gpu_event_record(a, NULL);
    gpu_event_elapsed_ms(a, b);
}

TEST(unrecorded_event_stops_with_one_line) {
    CHECK(expect_fatal(elapsed_of_unrecorded_event, NULL, "both events must be recorded"));
}

// ---------------------------------------------------------------- a kernel launch

// out[i] = scale * i for i < n: one thread per element, the grid rounded up past n.
__global__ void scaled_index_kernel(float *out, int n, float scale) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) out[i] = scale * (float)i;
}
CU_KERNEL_ARGS(scaled_index_kernel, float *, int, float);

TEST(kernel_launch_on_a_stream) {
    enum { COUNT = 1000, BLOCK = 128 };  // 8 blocks, the last one partly idle
    float *out = gpu_alloc((COUNT + 24) * sizeof(float));  // 4 KiB block: 24 floats past the end
    GpuStream *stream = gpu_stream_create();
    CU_LAUNCH(scaled_index_kernel, DIM3((COUNT + BLOCK - 1) / BLOCK, 1, 1), DIM3(BLOCK, 1, 1), 0,
              gpu_stream_handle(stream), out, COUNT, 0.5f);
    GPU_CHECK_LAUNCH();
    float *host = to_host(out, COUNT + 24);
    int wrong = 0, written_past_end = 0;
    for (int i = 0; i < COUNT; i++) wrong += host[i] != 0.5f * (float)i;
    for (int i = COUNT; i < COUNT + 24; i++) written_past_end += !isnan(host[i]);
    CHECK(wrong == 0);
    CHECK(written_past_end == 0);  // still the poison
    free(host);
    gpu_stream_destroy(stream);
    gpu_free(out);
}

static void launch_with_too_many_threads(void *context) {
    (void)context;
    float *out = gpu_alloc(4096 * sizeof(float));
    CU_LAUNCH(scaled_index_kernel, DIM3(1, 1, 1), DIM3(2048, 1, 1), 0, NULL, out, 4096, 1.0f);
    gpu_check_last_launch(__FILE__, __LINE__);
}

static void failing_cuda_call(void *context) {
    (void)context;
    GPU_CHECK(cuemu_func_set_max_dynamic_shared_size((const void *)scaled_index_kernel, (size_t)1 << 30));
}

TEST(launch_and_call_errors_stop_with_one_line) {
    CHECK(expect_fatal(launch_with_too_many_threads, NULL, "launch of scaled_index_kernel: invalid block (2048,1,1)"));
    CHECK(expect_fatal(launch_with_too_many_threads, NULL, "(checked at tests/test_gpu_runtime.c:"));
    CHECK(expect_fatal(failing_cuda_call, NULL,
                       "cuemu_func_set_max_dynamic_shared_size((const void *)scaled_index_kernel"));
    CHECK(expect_fatal(failing_cuda_call, NULL, "invalid argument (cudaErrorInvalidValue)"));
}

// ---------------------------------------------------------------- cuBLAS wrappers

static double op_at(const float *X, int64_t ld, int trans, int64_t i, int64_t k) {
    return trans ? X[k * ld + i] : X[i * ld + k];
}

// Entries of C (M x N, row stride ldc) off the reference alpha op(A) op(B) + beta C0, plus padding
// between rows (ldc > N) that no longer holds C0's value (the library wrote past the edge).
static int count_gemm_errors(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                             int64_t lda, const float *B, int64_t ldb, float beta, const float *C0, const float *C,
                             int64_t ldc) {
    int bad = 0;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < ldc; j++) {
            if (j >= N) {
                bad += C[i * ldc + j] != C0[i * ldc + j];
                continue;
            }
            double sum = 0, magnitude = 0;
            for (int64_t k = 0; k < K; k++) {
                double product = op_at(A, lda, trans_a, i, k) * op_at(B, ldb, trans_b, k, j);
                sum += product;
                magnitude += fabs(product);
            }
            double c0 = beta == 0.0f ? 0.0 : C0[i * ldc + j];
            double expected = alpha * sum + beta * c0;
            double tolerance = 1e-5 * (fabs(alpha) * magnitude + fabs(beta * c0)) + 1e-30;
            bad += !(fabs(C[i * ldc + j] - expected) <= tolerance);
        }
    }
    return bad;
}

// One GEMM on the device with padded leading dimensions; returns the number of bad entries.
static int device_gemm_errors(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
    int64_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K, b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    int64_t lda = a_cols + 3, ldb = b_cols + 1, ldc = N + 2;
    float *A = random_floats(a_rows * lda), *B = random_floats(b_rows * ldb), *C0 = random_floats(M * ldc);
    float *device_a = to_device(A, a_rows * lda), *device_b = to_device(B, b_rows * ldb);
    float *device_c = to_device(C0, M * ldc);
    if (beta == 0.0f)  // write-only C: poison the matrix (NaN) but keep the padding
        for (int64_t i = 0; i < M; i++) gpu_memset_async(device_c + i * ldc, 0xFF, (size_t)N * sizeof(float), NULL);
    gpu_sgemm(gpu_stream_default(), trans_a, trans_b, M, N, K, alpha, device_a, lda, device_b, ldb, beta, device_c,
              ldc);
    float *C = to_host(device_c, M * ldc);
    int bad = count_gemm_errors(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C0, C, ldc);
    gpu_free(device_a), gpu_free(device_b), gpu_free(device_c);
    free(A), free(B), free(C0), free(C);
    return bad;
}

TEST(sgemm_matches_the_reference_for_every_transpose) {
    static const int64_t sizes[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 17, 65}, {64, 1, 300}, {1, 129, 31},
                                       {97, 61, 1}, {5, 4, 0}, {130, 70, 257}};
    static const float alpha_beta[][2] = {{1.0f, 0.0f}, {-0.5f, 1.0f}, {2.0f, -0.25f}};
    for (int trans = 0; trans < 4; trans++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int ab = 0; ab < 3; ab++) {
                int ta = trans & 1, tb = trans >> 1;
                int bad = device_gemm_errors(ta, tb, sizes[s][0], sizes[s][1], sizes[s][2], alpha_beta[ab][0],
                                             alpha_beta[ab][1]);
                CHECK_MSG(bad == 0, "trans_a %d trans_b %d M %lld N %lld K %lld alpha %g beta %g: %d bad entries", ta,
                          tb, (long long)sizes[s][0], (long long)sizes[s][1], (long long)sizes[s][2],
                          alpha_beta[ab][0], alpha_beta[ab][1], bad);
            }
}

TEST(strided_batched_sgemm_matches_per_matrix_reference) {
    enum { BATCH = 3 };
    for (int trans = 0; trans < 4; trans++) {
        for (int broadcast_a = 0; broadcast_a < 2; broadcast_a++) {
            int ta = trans & 1, tb = trans >> 1;
            int64_t M = 11, N = 19, K = 23;
            int64_t lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
            int64_t size_a = M * K, size_b = K * N, size_c = M * N;
            int64_t stride_a = broadcast_a ? 0 : size_a + 5, stride_b = size_b + 2, stride_c = size_c + 1;
            int64_t total_a = broadcast_a ? size_a : BATCH * stride_a;
            float *A = random_floats(total_a), *B = random_floats(BATCH * stride_b);
            float *C0 = random_floats(BATCH * stride_c);
            float *device_a = to_device(A, total_a), *device_b = to_device(B, BATCH * stride_b);
            float *device_c = to_device(C0, BATCH * stride_c);
            gpu_sgemm_strided_batched(NULL, ta, tb, M, N, K, 0.75f, device_a, lda, stride_a, device_b, ldb, stride_b,
                                      0.5f, device_c, ldc, stride_c, BATCH);
            float *C = to_host(device_c, BATCH * stride_c);
            int bad = 0;
            for (int i = 0; i < BATCH; i++) {
                bad += count_gemm_errors(ta, tb, M, N, K, 0.75f, A + i * stride_a, lda, B + i * stride_b, ldb, 0.5f,
                                         C0 + i * stride_c, C + i * stride_c, ldc);
                if (i + 1 < BATCH) bad += C[i * stride_c + size_c] != C0[i * stride_c + size_c];  // gap untouched
            }
            CHECK_MSG(bad == 0, "trans_a %d trans_b %d broadcast A %d: %d bad entries", ta, tb, broadcast_a, bad);
            gpu_free(device_a), gpu_free(device_b), gpu_free(device_c);
            free(A), free(B), free(C0), free(C);
        }
    }
}

// ---------------------------------------------------------------- cuDNN wrappers

typedef struct {
    int64_t batch, c_in, h, w, c_out, kh, kw;
    int stride, pad, dilation, groups, with_bias;
} ConvCase;

// Entries of got[count] off want[count] by more than 1e-4 + 1e-4 |want| (NaN included).
static int count_close_errors(const float *got, const float *want, int64_t count) {
    int bad = 0;
    for (int64_t i = 0; i < count; i++) bad += !(fabs((double)got[i] - want[i]) <= 1e-4 + 1e-4 * fabs((double)want[i]));
    return bad;
}

static void check_conv_case(ConvCase c) {
    TensorScope scope = tensor_scope_begin();
    int64_t x_count = c.batch * c.c_in * c.h * c.w, w_count = c.c_out * (c.c_in / c.groups) * c.kh * c.kw;
    float *x_host = random_floats(x_count), *w_host = random_floats(w_count), *b_host = random_floats(c.c_out);
    Tensor *x = tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(c.batch, c.c_in, c.h, c.w), x_host));
    Tensor *w =
        tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(c.c_out, c.c_in / c.groups, c.kh, c.kw), w_host));
    Tensor *b = c.with_bias ? tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(c.c_out), b_host)) : NULL;
    Tensor *y = op_conv2d(x, w, b, (Conv2dParams){.stride_h = c.stride, .stride_w = c.stride, .pad_h = c.pad,
                                                  .pad_w = c.pad, .dilation_h = c.dilation, .dilation_w = c.dilation,
                                                  .groups = c.groups});
    int64_t y_count = y->shape[0] * y->shape[1] * y->shape[2] * y->shape[3];
    float *dy_host = random_floats(y_count);
    tensor_backward(y, tensor_from_data(DTYPE_F32, SHAPE(y->shape[0], y->shape[1], y->shape[2], y->shape[3]), dy_host));

    ConvGeometry g = {.batch = c.batch, .c_in = c.c_in, .h = c.h, .w = c.w, .c_out = c.c_out, .kh = c.kh, .kw = c.kw,
                      .stride_h = c.stride, .stride_w = c.stride, .pad_h = c.pad, .pad_w = c.pad,
                      .dilation_h = c.dilation, .dilation_w = c.dilation, .groups = c.groups};
    conv_geometry_finish(&g);
    CHECK(g.out_h == y->shape[2] && g.out_w == y->shape[3]);
    float *device_x = to_device(x_host, x_count), *device_w = to_device(w_host, w_count);
    float *device_b = to_device(b_host, c.c_out), *device_dy = to_device(dy_host, y_count);
    float *device_y = gpu_alloc((size_t)y_count * sizeof(float));
    float *device_dx = gpu_alloc((size_t)x_count * sizeof(float));
    float *device_dw = gpu_alloc((size_t)w_count * sizeof(float));
    float *device_db = gpu_alloc((size_t)c.c_out * sizeof(float));
    GpuStream *stream = gpu_stream_create();
    gpu_conv2d_forward(stream, &g, device_x, device_w, c.with_bias ? device_b : NULL, device_y);
    gpu_conv2d_backward_data(stream, &g, device_w, device_dy, device_dx);
    gpu_conv2d_backward_filter(stream, &g, device_x, device_dy, device_dw);
    gpu_conv2d_backward_bias(stream, &g, device_dy, device_db);
    gpu_stream_synchronize(stream);
    float *y_got = to_host(device_y, y_count), *dx_got = to_host(device_dx, x_count);
    float *dw_got = to_host(device_dw, w_count), *db_got = to_host(device_db, c.c_out);

    float db_want[64];  // sum of dy over B, OH, OW, in double
    for (int64_t o = 0; o < c.c_out; o++) {
        double sum = 0;
        for (int64_t n = 0; n < c.batch; n++)
            for (int64_t p = 0; p < g.out_h * g.out_w; p++) sum += dy_host[(n * c.c_out + o) * g.out_h * g.out_w + p];
        db_want[o] = (float)sum;
    }
    int bad_y = count_close_errors(y_got, tensor_f32(y), y_count);
    int bad_dx = count_close_errors(dx_got, tensor_f32(x->grad), x_count);
    int bad_dw = count_close_errors(dw_got, tensor_f32(w->grad), w_count);
    int bad_db = count_close_errors(db_got, c.with_bias ? tensor_f32(b->grad) : db_want, c.c_out);
    CHECK_MSG(bad_y + bad_dx + bad_dw + bad_db == 0,
              "x [%lld, %lld, %lld, %lld] w %lldx%lld Cout %lld stride %d pad %d dilation %d groups %d bias %d: "
              "bad y %d, dx %d, dw %d, dbias %d",
              (long long)c.batch, (long long)c.c_in, (long long)c.h, (long long)c.w, (long long)c.kh, (long long)c.kw,
              (long long)c.c_out, c.stride, c.pad, c.dilation, c.groups, c.with_bias, bad_y, bad_dx, bad_dw, bad_db);

    gpu_stream_destroy(stream);
    float *device_buffers[] = {device_x, device_w, device_b, device_dy, device_y, device_dx, device_dw, device_db};
    for (size_t i = 0; i < sizeof device_buffers / sizeof device_buffers[0]; i++) gpu_free(device_buffers[i]);
    float *host_buffers[] = {x_host, w_host, b_host, dy_host, y_got, dx_got, dw_got, db_got};
    for (size_t i = 0; i < sizeof host_buffers / sizeof host_buffers[0]; i++) free(host_buffers[i]);
    tensor_scope_end(scope);
}

TEST(conv_wrappers_match_op_conv2d_forward_and_backward) {
    static const ConvCase cases[] = {
        // B  Cin  H   W  Cout KH KW stride pad dilation groups bias
        {2, 3, 9, 7, 5, 3, 3, 1, 1, 1, 1, 1},
        {1, 4, 11, 13, 6, 3, 3, 2, 1, 1, 2, 1},   // stride 2, groups 2
        {3, 2, 10, 10, 4, 3, 2, 1, 2, 2, 1, 0},   // dilation 2, non-square kernel, no bias
        {2, 8, 5, 5, 8, 1, 1, 1, 0, 1, 1, 1},     // pointwise
        {1, 6, 7, 7, 6, 3, 3, 1, 1, 1, 6, 1},     // depthwise
        {5, 3, 4, 6, 7, 4, 4, 3, 2, 1, 1, 0},     // stride 3 with padding
        {17, 16, 4, 4, 32, 3, 3, 1, 1, 1, 1, 1},  // small maps, many images (images folded into the GEMM)
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv_case(cases[i]);
}

int main(void) {
    RUN_TEST(emulated_device_identity);
    RUN_TEST(block_sizes_round_up_by_at_most_a_quarter);
    RUN_TEST(allocator_reuses_freed_blocks_and_counts);
    RUN_TEST(fresh_device_memory_is_nan_poisoned);
    RUN_TEST(memory_limit_releases_the_cache_and_retries);
    RUN_TEST(out_of_memory_and_misuse_stop_with_one_line);
    RUN_TEST(copies_round_trip);
    RUN_TEST(streams_and_events_order_work);
    RUN_TEST(unrecorded_event_stops_with_one_line);
    RUN_TEST(kernel_launch_on_a_stream);
    RUN_TEST(launch_and_call_errors_stop_with_one_line);
    RUN_TEST(sgemm_matches_the_reference_for_every_transpose);
    RUN_TEST(strided_batched_sgemm_matches_per_matrix_reference);
    RUN_TEST(conv_wrappers_match_op_conv2d_forward_and_backward);
    gpu_cache_release_all();
    return test_summary();
}
