// Data-parallel gradient averaging (engine/dist.h: dist_gradients_overlap_begin,
// dist_average_gradients): the flat gradient buffer in fixed buckets (engine/dist_buckets.h),
// each all-reduced while backward is still computing the rest once autograd's gradient-ready
// hook has reported every parameter in it.
//
// Why the result does not depend on overlapping: each bucket is the same range of the same
// buffer, reduced by the same collective (MPI_SUM of count floats, or ncclAvg) once its elements
// are final, and the division by the world size is the same float multiply afterwards. Only the
// time each reduction starts changes.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/autograd.h"
#include "engine/dist.h"
#include "engine/dist_buckets.h"
#include "engine/gpu/gpu_comm.h"
#include "engine/tensor.h"

typedef enum {
    MODE_MPI,      // host gradients over MPI: MPI_Iallreduce during backward
    MODE_NCCL,     // device gradients over NCCL: the communication stream during backward
    MODE_BLOCKING  // host gradients over the nccl backend, device gradients without NCCL: after backward
} Mode;

static struct {
    ParamStore *armed;       // the store whose next backward is overlapped; NULL when idle
    size_t bucket_bytes;
    Mode mode;
    GradientBuckets buckets;
    ParamStore *layout_of;   // whose layout `buckets` describes (kept across steps)
    int64_t layout_numel;
    int layout_count;
    size_t layout_bucket_bytes;
    // Buckets started by the hook, and by its latest call: those were started by the pass's last
    // gradient, with no backward left to overlap.
    int64_t started_by_hook, started_by_latest_report, last_buckets, last_started;
    GradReadyHook previous_hook;
    void *previous_context;
} overlap;

static Mode mode_for(const ParamStore *params) {
    if (params->grads->device.kind != DEVICE_CPU) return gpu_comm_available() ? MODE_NCCL : MODE_BLOCKING;
    return strcmp(dist_backend(), "mpi") == 0 ? MODE_MPI : MODE_BLOCKING;
}

// The buckets of this store's layout (built once; the parameters in creation order).
static void prepare_buckets(ParamStore *params, size_t bucket_bytes) {
    if (overlap.layout_of == params && overlap.layout_numel == params->numel && overlap.layout_count == params->count &&
        overlap.layout_bucket_bytes == bucket_bytes) {
        gradient_buckets_reset(&overlap.buckets);
        return;
    }
    gradient_buckets_free(&overlap.buckets);
    int64_t *start = calloc((size_t)params->count + 1, sizeof(int64_t)), *size = calloc((size_t)params->count + 1, sizeof(int64_t));
    int ranges = 0;
    if (!start || !size) tensor_fatal("dist", "out of memory");
    for (int i = 0; i < params->count; i++) {
        if (params->items[i].group < 0) continue;  // buffers: not in the flat buffer
        start[ranges] = params->items[i].offset;
        size[ranges++] = tensor_numel(params->items[i].value);
    }
    if (gradient_buckets_init(&overlap.buckets, params->numel, bucket_bytes, ranges, start, size) != 0)
        tensor_fatal("dist", "cannot lay out the gradient buckets (out of memory, or parameters outside the flat buffer)");
    free(start);
    free(size);
    overlap.layout_of = params;
    overlap.layout_numel = params->numel;
    overlap.layout_count = params->count;
    overlap.layout_bucket_bytes = bucket_bytes;
}

static void bucket_name(char *what, size_t size, int64_t k) {
    snprintf(what, size, "gradients, bucket %lld/%lld", (long long)(k + 1), (long long)overlap.buckets.count);
}

static void launch(ParamStore *params, int64_t k) {
    int64_t start, count;
    gradient_buckets_range(&overlap.buckets, k, &start, &count);
    char what[64];
    bucket_name(what, sizeof what, k);
    if (overlap.mode == MODE_NCCL) gpu_comm_all_reduce_avg_f32_start(params_grads(params) + start, count, what);
    else dist_mpi_all_reduce_start(params_grads(params) + start, count, DIST_F32, what);
}

// autograd's gradient-ready hook: a parameter of the armed store has its final gradient.
static void on_gradient_ready(Tensor *leaf, void *context) {
    ParamStore *params = overlap.armed;
    // Only the store's own parameters (their values live in its flat buffer); an input image that
    // requires gradients, or another model's parameters, is not ours.
    if (!params || leaf->storage != params->values) return;
    int status = gradient_buckets_mark_ready(&overlap.buckets, leaf->offset, tensor_numel(leaf));
    if (status == 2)
        tensor_fatal("dist", "a parameter's gradient became final twice after dist_gradients_overlap_begin: arm the "
                             "overlap just before the step's last backward pass");
    if (status != 0) return;  // a view of the flat buffer, not one of its parameters
    int64_t k;
    overlap.started_by_latest_report = 0;
    while ((k = gradient_buckets_pop(&overlap.buckets, false)) >= 0) {
        launch(params, k);
        overlap.started_by_hook++;
        overlap.started_by_latest_report++;
    }
    if (overlap.mode == MODE_MPI) dist_mpi_progress();
}

static void disarm(void) {
    if (!overlap.armed) return;
    overlap.armed = NULL;
    autograd_set_grad_ready_hook(overlap.previous_hook, overlap.previous_context, NULL);
}

void dist_gradients_overlap_begin(ParamStore *params, size_t bucket_bytes) {
    if (dist_world_size() == 1 || params->numel == 0) return;
    if (overlap.armed) tensor_fatal("dist", "dist_gradients_overlap_begin twice without dist_average_gradients in between");
    if (!params->finalized) tensor_fatal("dist", "dist_gradients_overlap_begin: the parameters are not finalized");
    overlap.mode = mode_for(params);
    if (overlap.mode == MODE_BLOCKING) return;  // nothing to overlap with: see dist.h
    // The communicator must exist before backward starts queueing on it (collective: every rank
    // arrives here in the same step).
    if (overlap.mode == MODE_NCCL) dist_nccl_ensure_communicator();
    prepare_buckets(params, bucket_bytes);
    overlap.armed = params;
    overlap.bucket_bytes = bucket_bytes;
    overlap.started_by_hook = overlap.started_by_latest_report = 0;
    overlap.previous_hook = autograd_set_grad_ready_hook(on_gradient_ready, NULL, &overlap.previous_context);
}

static void scale(float *x, int64_t count) {  // as dist_mpi_all_reduce's DIST_AVG: the same bits
    float s = (float)(1.0 / dist_world_size());
    for (int64_t i = 0; i < count; i++) x[i] *= s;
}

// Without overlap: bucket after bucket, each a blocking all-reduce (device gradients: NCCL in
// place, or staged through the host when the program has no NCCL).
static void average_blocking(ParamStore *params, size_t bucket_bytes) {
    GradientBuckets b;
    if (gradient_buckets_init(&b, params->numel, bucket_bytes, 0, NULL, NULL) != 0) tensor_fatal("dist", "out of memory");
    bool on_device = params->grads->device.kind != DEVICE_CPU;
    float *grads = params_grads(params);
    for (int64_t k = 0; k < b.count; k++) {
        int64_t start, count;
        gradient_buckets_range(&b, k, &start, &count);
        char what[64];
        snprintf(what, sizeof what, "gradients, bucket %lld/%lld", (long long)(k + 1), (long long)b.count);
        if (on_device) dist_device_all_reduce(grads + start, count, DIST_F32, DIST_AVG, what);
        else dist_all_reduce(grads + start, count, DIST_F32, DIST_AVG, what);
    }
    overlap.last_buckets = b.count;
    overlap.last_started = 0;
    gradient_buckets_free(&b);
}

void dist_average_gradients(ParamStore *params, size_t bucket_bytes) {
    if (dist_world_size() == 1 || params->numel == 0) return;
    if (!overlap.armed) {
        average_blocking(params, bucket_bytes);
        return;
    }
    if (overlap.armed != params || overlap.bucket_bytes != bucket_bytes)
        tensor_fatal("dist", "dist_average_gradients: other parameters or bucket size than dist_gradients_overlap_begin's");
    disarm();
    // Buckets backward did not complete (parameters it did not reach: frozen, unused), in the
    // same fixed order on every rank.
    int64_t k;
    while ((k = gradient_buckets_pop(&overlap.buckets, true)) >= 0) launch(params, k);
    if (overlap.mode == MODE_NCCL) {
        gpu_comm_wait(dist_timeout());  // ncclAvg has divided already
    } else {
        dist_mpi_wait_all();
        scale(params_grads(params), params->numel);
    }
    overlap.last_buckets = overlap.buckets.count;
    overlap.last_started = overlap.started_by_hook - overlap.started_by_latest_report;
}

void dist_gradients_last_counts(int64_t *buckets, int64_t *started_early) {
    *buckets = overlap.last_buckets;
    *started_early = overlap.last_started;
}
