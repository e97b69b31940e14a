// Tensors: typed, strided views over refcounted storage, on a device.
//
// Ownership. Every function that returns a new Tensor* hands it to the innermost open *scope*
// (tensor_scope_begin/end), like an autorelease pool: code builds expressions freely, e.g.
//   Tensor *y = op_relu(op_add(op_matmul(x, w), b));
// and tensor_scope_end() releases every tensor made since the matching begin. A tensor that must
// outlive its scope (parameters, running statistics, a result returned to the caller) is kept with
// tensor_keep(t) — one extra reference the caller releases later with tensor_release(t).
// Outside any scope, new tensors belong to the root scope, which is never drained.
//
// Devices. A tensor's storage lives on the CPU or on a CUDA device (engine/gpu/gpu.h: a real GPU,
// or the emulated device in tests). tensor_data() is then a device pointer: host code reads and
// writes device tensors only through tensor_get/tensor_set/tensor_copy_raw and friends, which go
// through the runtime's copies.
//
// Autograd fields (requires_grad, grad, node) are managed by engine/autograd.h.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/dtype.h"

#define TENSOR_MAX_DIMS 8

typedef enum { DEVICE_CPU, DEVICE_CUDA } DeviceKind;
typedef struct {
    DeviceKind kind;
    int index;
} Device;

typedef struct Storage {
    void *data;
    size_t nbytes;
    size_t capacity;  // bytes actually allocated (>= nbytes)
    int refcount;
    Device device;
    bool owns_data;  // false for memory we do not free (e.g. an mmap'd checkpoint)
} Storage;

typedef struct {
    int ndim;
    int64_t dims[TENSOR_MAX_DIMS];
} Shape;

// SHAPE(2, 3, 4) builds a Shape literal; SHAPE() is a scalar.
#define SHAPE_NARGS_(...) SHAPE_NARGS_PICK_(__VA_ARGS__ __VA_OPT__(, ) 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define SHAPE_NARGS_PICK_(a1, a2, a3, a4, a5, a6, a7, a8, n, ...) n
#define SHAPE(...) ((Shape){.ndim = SHAPE_NARGS_(__VA_ARGS__), .dims = {__VA_ARGS__}})

struct AutogradNode;

typedef struct Tensor {
    DType dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS];  // in elements
    int64_t offset;                   // in elements, into storage
    Storage *storage;
    int refcount;
    bool requires_grad;
    bool retains_grad;          // keep .grad for a non-leaf tensor too (tensor_retain_grad)
    struct Tensor *grad;        // accumulated gradient (leaves, or retained non-leaves)
    struct AutogradNode *node;  // the op that produced this tensor; NULL for leaves
    char name[64];              // optional, for messages ("conv1.weight")
} Tensor;

// ---- Scopes and references ----
typedef int64_t TensorScope;
TensorScope tensor_scope_begin(void);
void tensor_scope_end(TensorScope scope);
Tensor *tensor_keep(Tensor *t);  // +1 reference owned by the caller; returns t
void tensor_release(Tensor *t);  // drops one reference (NULL is fine)

// ---- Creation (contiguous, on the default device) ----
Device device_cpu(void);
Device tensor_default_device(void);
void tensor_set_default_device(Device device);

Tensor *tensor_empty(DType dtype, Shape shape);
Tensor *tensor_empty_on(DType dtype, Shape shape, Device device);
Tensor *tensor_zeros(DType dtype, Shape shape);
Tensor *tensor_full(DType dtype, Shape shape, double value);
Tensor *tensor_from_data(DType dtype, Shape shape, const void *data);  // copies
Tensor *tensor_scalar(DType dtype, double value);                      // 0-dim
Tensor *tensor_arange(DType dtype, int64_t n);                         // 0..n-1
Tensor *tensor_empty_like(const Tensor *t);
Tensor *tensor_zeros_like(const Tensor *t);
// A tensor viewing caller memory that Tailor never frees (mmap'd weights, external buffers).
Tensor *tensor_wrap(DType dtype, Shape shape, void *data);
// A tensor over an existing storage (parameters in one flat buffer): shape + offset, contiguous.
Tensor *tensor_over_storage(Storage *storage, DType dtype, Shape shape, int64_t offset);
Storage *storage_new(size_t nbytes, Device device);
void storage_release(Storage *storage);
// Frees the blocks the CPU storage cache keeps for reuse (freed tensors' memory).
void storage_cache_release_all(void);

// ---- Queries ----
int64_t tensor_numel(const Tensor *t);
Shape tensor_shape(const Tensor *t);
int64_t shape_numel(Shape shape);
bool tensor_is_contiguous(const Tensor *t);
static inline bool tensor_is_cuda(const Tensor *t) { return t->storage->device.kind == DEVICE_CUDA; }
bool tensor_same_shape(const Tensor *a, const Tensor *b);
bool shape_equal(Shape a, Shape b);
void *tensor_data(const Tensor *t);  // pointer to element [0,...,0]
static inline float *tensor_f32(const Tensor *t) { return (float *)tensor_data(t); }
static inline double *tensor_f64(const Tensor *t) { return (double *)tensor_data(t); }
static inline int64_t *tensor_i64(const Tensor *t) { return (int64_t *)tensor_data(t); }
int tensor_normalize_dim(const Tensor *t, int dim);  // negative dims count from the end; aborts on a bad dim
// "[2, 3, 4]" into buf; returns buf.
char *shape_string(Shape shape, char *buf, size_t size);
char *tensor_shape_string(const Tensor *t, char *buf, size_t size);
void tensor_set_name(Tensor *t, const char *name);

// Element access by flat (row-major) index over the logical shape, any dtype/strides. Slow; for
// tests, small tensors and setup code.
double tensor_get(const Tensor *t, int64_t flat_index);
void tensor_set(Tensor *t, int64_t flat_index, double value);
double tensor_item(const Tensor *t);  // the single element of a 1-element tensor

// ---- Raw (no autograd) layout helpers used by op implementations ----
// A contiguous tensor with the same values: t itself (with a new scope reference) if already
// contiguous, else a copy. Never records autograd.
Tensor *tensor_contiguous_raw(Tensor *t);
// Copies src into dst elementwise (same shape, any strides and dtypes).
void tensor_copy_raw(Tensor *dst, const Tensor *src);
// A new view sharing storage with the given shape/strides/offset; no autograd.
Tensor *tensor_view_raw(Tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset);
void tensor_fill_raw(Tensor *t, double value);
// A copy of t on `device` (no autograd; op_to_device records it).
Tensor *tensor_to_device_raw(Tensor *t, Device device);

// Prints "name dtype [shape]" and up to `max_elements` values.
void tensor_print(const Tensor *t, int max_elements);

// Fatal error for misuse by code (bad dims, dtype mix): prints one line with the op and exits(2).
// User-facing code validates its inputs first and reports them itself.
_Noreturn void tensor_fatal(const char *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
