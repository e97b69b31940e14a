// out[i] = condition[i] ? a[i] : b[i] over broadcast operands: one thread per output element in a
// grid-stride loop, each decoding its row-major index into the three operands' offsets. A select,
// not arithmetic, so infinities and NaNs in the unselected operand never leak (c * a + (1 - c) * b
// would turn -inf into NaN).
#include "kernels/cuda_compat.h"
#include "kernels/where.h"

__global__ void where_f32_kernel(const uint8_t *__restrict__ condition, const float *__restrict__ a,
                                 const float *__restrict__ b, float *__restrict__ out, int64_t n,
                                 KernelWhereLayout layout) {
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        int64_t rest = i, oc = 0, oa = 0, ob = 0;
        for (int d = layout.ndim - 1; d >= 0; d--) {
            int64_t coordinate = rest % layout.shape[d];
            rest /= layout.shape[d];
            oc += coordinate * layout.stride_condition[d];
            oa += coordinate * layout.stride_a[d];
            ob += coordinate * layout.stride_b[d];
        }
        out[i] = condition[oc] ? a[oa] : b[ob];
    }
}
CU_KERNEL_ARGS(where_f32_kernel, const uint8_t *, const float *, const float *, float *, int64_t, KernelWhereLayout);

CU_EXTERN_C void where_f32_launch(const uint8_t *condition, const float *a, const float *b, float *out,
                                  KernelWhereLayout layout, cudaStream_t stream) {
    int64_t n = 1;
    for (int d = 0; d < layout.ndim; d++) n *= layout.shape[d];
    if (n <= 0) return;
    const int threads = 256;
    int64_t blocks = (n + threads - 1) / threads;
    if (blocks > 4096) blocks = 4096;  // grid-stride beyond: enough blocks to fill any current GPU
    CU_LAUNCH(where_f32_kernel, (unsigned int)blocks, threads, 0, stream, condition, a, b, out, n, layout);
}
