// Reverse-mode automatic differentiation on a dynamic tape.
//
// Each differentiable op that sees an input requiring gradients records an AutogradNode on its
// output: the inputs (referenced), whatever its backward needs (saved tensors and scalars), and a
// backward function. tensor_backward() orders the nodes reachable from the root topologically and
// runs their backward functions in reverse, summing gradients that meet at a tensor. Leaves that
// require gradients (parameters, or any input such as a test image) accumulate into .grad.
//
// The graph lives as long as the tensors that own it (until their scope ends), so several backward
// passes over a shared trunk in one step work (MCD). Backward functions run with grad mode off and
// may be written with the ordinary ops.
#pragma once
#include "engine/tensor.h"

#define AUTOGRAD_MAX_SAVED 8
#define AUTOGRAD_MAX_PARAMS 16

typedef struct AutogradNode AutogradNode;
// Computes input gradients from the output gradient and hands each to autograd_pass_grad().
typedef void (*BackwardFn)(AutogradNode *node, Tensor *grad_output);

struct AutogradNode {
    const char *op;
    BackwardFn backward;
    int n_inputs;
    Tensor **inputs;                     // referenced while the node lives
    Tensor *saved[AUTOGRAD_MAX_SAVED];   // referenced; saved outputs are aliases without a node
    int64_t ints[AUTOGRAD_MAX_PARAMS];   // op parameters (dims, strides, flags)
    double reals[AUTOGRAD_MAX_PARAMS];   // op parameters (scales, eps)
    Shape output_shape;
    DType output_dtype;
    Tensor *owner;         // the output tensor (not referenced; cleared when it is freed)
    // Backward bookkeeping
    Tensor *grad_sum;      // gradient arriving at the output during the current backward pass
    bool grad_sum_owned;   // grad_sum is a tensor of the node's own (may be added to in place)
    int64_t visit_mark;
};

// Grad mode: when off, ops record nothing (evaluation, optimizer updates, backward itself).
bool autograd_enabled(void);
bool autograd_set_enabled(bool enabled);  // returns the previous state

// True when grad mode is on and any of the given inputs requires gradients.
bool autograd_needed(int n, Tensor *const *inputs);
// Records a node producing `output` from the inputs; output->requires_grad becomes true.
AutogradNode *autograd_record(Tensor *output, const char *op, BackwardFn backward, int n_inputs, Tensor *const *inputs);
// Saves a tensor for backward. Saving the node's own output stores an alias without graph links,
// so the graph has no cycles.
void autograd_save(AutogradNode *node, int slot, Tensor *t);
// Called by backward functions: the gradient for input i (same shape as that input). NULL skips.
void autograd_pass_grad(AutogradNode *node, int input_index, Tensor *grad);
bool autograd_input_needs_grad(const AutogradNode *node, int input_index);

// Gradient-ready hook: during tensor_backward, called once for every leaf requiring gradients that
// the pass reaches (an input of a node the pass visits, or the root itself), as soon as every node
// of the pass that consumes it has run — so its .grad is final for this pass (a leaf used twice is
// reported after its second contribution; a leaf whose consumers passed no gradient is reported
// too, its .grad untouched). Leaves the pass does not reach are not reported. Data-parallel training
// starts a bucket's all-reduce from here while backward goes on (engine/dist_gradients.c). The hook
// runs on the thread of tensor_backward, with grad mode off; it must not change the graph. One hook
// per thread; returns the previous one (restore it when done). NULL removes it.
typedef void (*GradReadyHook)(Tensor *leaf, void *context);
GradReadyHook autograd_set_grad_ready_hook(GradReadyHook hook, void *context, void **previous_context);

// Backward from `root`. grad_output NULL means root must have one element and gets gradient 1.
void tensor_backward(Tensor *root, Tensor *grad_output);
// Marks a leaf as requiring gradients (must be floating point).
Tensor *tensor_requires_grad(Tensor *t);
// Keep .grad for a non-leaf tensor on the next backward passes.
void tensor_retain_grad(Tensor *t);
void tensor_zero_grad(Tensor *t);
// A tensor sharing the data but cut from the graph.
Tensor *tensor_detach(Tensor *t);

// Used by tensor_release when the owner of a node goes away.
void autograd_node_release(AutogradNode *node, Tensor *owner);
