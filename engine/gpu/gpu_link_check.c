// gpu-link-check: proves in CI that gpu_cudart.c links against cudart, cuBLAS and cuDNN (make
// gpu-link-check, engine/gpu/gpu.mk). Without a GPU or driver it reports 0 devices and succeeds; on
// a machine with a GPU it also runs a 2x3 @ 3x2 sgemm through cuBLAS's column-major trick and
// checks the result, the one quick end-to-end check of the real device path.
#include <math.h>
#include <stdio.h>

#include "engine/gpu/gpu.h"

int main(void) {
    int count = gpu_device_count();
    printf("gpu-link-check: backend %s, %d CUDA device(s)\n", gpu_backend_name(), count);
    if (count == 0) return 0;
    char error[320];
    if (gpu_select(0, error, sizeof error) != 0) gpu_fatal("gpu-link-check", "%s", error);
    printf("gpu-link-check: device 0 is %s\n", gpu_device_name());
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {7, 8, 9, 10, 11, 12};  // A [2, 3], B [3, 2]
    const float expected[4] = {58, 64, 139, 154};
    float c[4];
    float *device_a = gpu_alloc(sizeof a), *device_b = gpu_alloc(sizeof b), *device_c = gpu_alloc(sizeof c);
    gpu_copy_to_device(device_a, a, sizeof a);
    gpu_copy_to_device(device_b, b, sizeof b);
    gpu_sgemm(NULL, 0, 0, 2, 2, 3, 1.0f, device_a, 3, device_b, 2, 0.0f, device_c, 2);
    gpu_copy_to_host(c, device_c, sizeof c);
    gpu_free(device_a), gpu_free(device_b), gpu_free(device_c);
    for (int i = 0; i < 4; i++)
        if (fabsf(c[i] - expected[i]) > 1e-4f)
            gpu_fatal("gpu-link-check", "sgemm on the device gave C[%d] = %g, expected %g", i, c[i], expected[i]);
    printf("gpu-link-check: sgemm on the device agrees\n");
    return 0;
}
