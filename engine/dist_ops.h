// Differentiable collectives: ops whose forward and backward communicate across the ranks of
// engine/dist, for computations that span the global batch (synchronized BatchNorm).
#pragma once
#include "engine/tensor.h"

// The elementwise sum of x over all ranks (every rank gets the same result). Backward: the
// gradient of a rank's input is the sum over ranks of the output gradients, since every rank's
// output depends on every rank's input (the same all-reduce). f32 or f64, on the CPU or a CUDA
// device (engine/dist.h: dist_device_all_reduce); with one rank it is the identity. Every rank
// must call it (and run backward through it) in the same order.
Tensor *op_dist_all_reduce_sum(Tensor *x, const char *what);
