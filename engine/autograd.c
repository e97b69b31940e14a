#include "engine/autograd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ops.h"

static _Thread_local bool grad_enabled = true;

bool autograd_enabled(void) { return grad_enabled; }

bool autograd_set_enabled(bool enabled) {
    bool previous = grad_enabled;
    grad_enabled = enabled;
    return previous;
}

bool autograd_needed(int n, Tensor *const *inputs) {
    if (!grad_enabled) return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

AutogradNode *autograd_record(Tensor *output, const char *op, BackwardFn backward, int n_inputs, Tensor *const *inputs) {
    AutogradNode *node = calloc(1, sizeof(AutogradNode));
    node->inputs = calloc((size_t)(n_inputs ? n_inputs : 1), sizeof(Tensor *));
    if (!node || !node->inputs) tensor_fatal(op, "out of memory recording the graph");
    node->op = op;
    node->backward = backward;
    node->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) node->inputs[i] = tensor_keep(inputs[i]);
    node->output_shape = tensor_shape(output);
    node->output_dtype = output->dtype;
    node->owner = output;
    if (output->node) tensor_fatal(op, "output already has a graph node");
    output->node = node;
    output->requires_grad = true;
    return node;
}

void autograd_save(AutogradNode *node, int slot, Tensor *t) {
    if (slot < 0 || slot >= AUTOGRAD_MAX_SAVED) tensor_fatal(node->op, "save slot %d out of range", slot);
    if (t && t->node == node) {
        // An alias of our own output: same data, no node, so output -> node -> alias has no cycle.
        Tensor *alias = tensor_view_raw(t, t->ndim, t->shape, t->stride, t->offset);
        t = alias;
    }
    tensor_release(node->saved[slot]);
    node->saved[slot] = tensor_keep(t);
}

bool autograd_input_needs_grad(const AutogradNode *node, int i) {
    return node->inputs[i] && node->inputs[i]->requires_grad;
}

void autograd_node_release(AutogradNode *node, Tensor *owner) {
    if (node->owner != owner) return;
    for (int i = 0; i < node->n_inputs; i++) tensor_release(node->inputs[i]);
    for (int i = 0; i < AUTOGRAD_MAX_SAVED; i++) tensor_release(node->saved[i]);
    tensor_release(node->grad_sum);
    free(node->inputs);
    free(node);
}

// Adds g into *slot, which owns one reference (allocating it on first use). Used for .grad, which
// outlives the pass and is accumulated in place later, so the first gradient is copied.
static void accumulate_into(Tensor **slot, Tensor *g) {
    if (!*slot) {
        Tensor *copy = tensor_empty_like(g);
        tensor_copy_raw(copy, g);
        *slot = tensor_keep(copy);
    } else {
        op_add_inplace_raw(*slot, g);
    }
}

// The gradient arriving at a node's output during a pass. Most outputs have one consumer, so the
// first gradient is kept by reference, not copied; it may share storage with other gradients
// (add's backward hands the same tensor to both inputs), so a second arrival sums out of place
// into a tensor the node owns, and only that one is added to in place.
static void accumulate_node_grad(AutogradNode *node, Tensor *g) {
    if (!node->grad_sum) {
        node->grad_sum = tensor_keep(g);
        node->grad_sum_owned = false;
    } else if (!node->grad_sum_owned) {
        Tensor *sum = tensor_empty_like(g);
        tensor_copy_raw(sum, node->grad_sum);
        op_add_inplace_raw(sum, g);
        tensor_release(node->grad_sum);
        node->grad_sum = tensor_keep(sum);
        node->grad_sum_owned = true;
    } else {
        op_add_inplace_raw(node->grad_sum, g);
    }
}

void autograd_pass_grad(AutogradNode *node, int i, Tensor *grad) {
    Tensor *input = node->inputs[i];
    if (!grad || !input || !input->requires_grad) return;
    if (!tensor_same_shape(grad, input)) {
        char a[96], b[96];
        tensor_fatal(node->op, "backward produced a gradient of shape %s for input %d of shape %s",
                     tensor_shape_string(grad, a, sizeof a), i, tensor_shape_string(input, b, sizeof b));
    }
    if (input->node)
        accumulate_node_grad(input->node, grad);
    else
        accumulate_into(&input->grad, grad);
}

// Depth-first post-order over the nodes reachable from root: order[k] comes after all its inputs.
typedef struct {
    AutogradNode **items;
    int64_t count, capacity;
} NodeList;

static void node_list_push(NodeList *list, AutogradNode *node) {
    if (list->count == list->capacity) {
        list->capacity = list->capacity ? list->capacity * 2 : 256;
        list->items = realloc(list->items, (size_t)list->capacity * sizeof(AutogradNode *));
        if (!list->items) tensor_fatal("backward", "out of memory");
    }
    list->items[list->count++] = node;
}

static void topological_order(AutogradNode *root, int64_t mark, NodeList *order) {
    // Iterative DFS with an explicit stack of (node, next input index) to survive deep graphs.
    NodeList stack = {0};
    int64_t *next_input = NULL;
    int64_t next_capacity = 0;
    root->visit_mark = mark;
    node_list_push(&stack, root);
    while (stack.count) {
        if (next_capacity < stack.capacity) {
            next_input = realloc(next_input, (size_t)stack.capacity * sizeof(int64_t));
            for (int64_t k = next_capacity; k < stack.capacity; k++) next_input[k] = 0;
            next_capacity = stack.capacity;
        }
        int64_t top = stack.count - 1;
        AutogradNode *node = stack.items[top];
        bool descended = false;
        while (next_input[top] < node->n_inputs) {
            Tensor *input = node->inputs[next_input[top]++];
            if (input && input->node && input->node->visit_mark != mark) {
                input->node->visit_mark = mark;
                node_list_push(&stack, input->node);
                if (next_capacity < stack.capacity) {
                    next_input = realloc(next_input, (size_t)stack.capacity * sizeof(int64_t));
                    for (int64_t k = next_capacity; k < stack.capacity; k++) next_input[k] = 0;
                    next_capacity = stack.capacity;
                }
                next_input[stack.count - 1] = 0;
                descended = true;
                break;
            }
        }
        if (!descended) {
            node_list_push(order, node);
            stack.count--;
        }
    }
    free(stack.items);
    free(next_input);
}

static _Thread_local GradReadyHook ready_hook;
static _Thread_local void *ready_context;

GradReadyHook autograd_set_grad_ready_hook(GradReadyHook hook, void *context, void **previous_context) {
    GradReadyHook previous = ready_hook;
    if (previous_context) *previous_context = ready_context;
    ready_hook = hook;
    ready_context = context;
    return previous;
}

// For the gradient-ready hook: how many consumers of each leaf (edges from the pass's nodes) have
// not run yet. An open-addressing table keyed by the leaf's address; built only when a hook is set.
typedef struct {
    Tensor **keys;
    int64_t *pending;
    int64_t capacity;  // a power of two, at least twice the leaves
} LeafCounts;

static int64_t leaf_slot(const LeafCounts *table, const Tensor *leaf) {
    uint64_t h = (uint64_t)(uintptr_t)leaf * 0x9E3779B97F4A7C15ull;
    int64_t slot = (int64_t)(h >> 20) & (table->capacity - 1);
    while (table->keys[slot] && table->keys[slot] != leaf) slot = (slot + 1) & (table->capacity - 1);
    return slot;
}

static bool is_reported_leaf(const Tensor *t) { return t && !t->node && t->requires_grad; }

static void leaf_counts_build(LeafCounts *table, const NodeList *order) {
    int64_t edges = 0;
    for (int64_t k = 0; k < order->count; k++) edges += order->items[k]->n_inputs;
    table->capacity = 16;
    while (table->capacity < 2 * edges + 2) table->capacity *= 2;
    table->keys = calloc((size_t)table->capacity, sizeof(Tensor *));
    table->pending = calloc((size_t)table->capacity, sizeof(int64_t));
    if (!table->keys || !table->pending) tensor_fatal("backward", "out of memory");
    for (int64_t k = 0; k < order->count; k++) {
        AutogradNode *node = order->items[k];
        for (int i = 0; i < node->n_inputs; i++) {
            if (!is_reported_leaf(node->inputs[i])) continue;
            int64_t slot = leaf_slot(table, node->inputs[i]);
            table->keys[slot] = node->inputs[i];
            table->pending[slot]++;
        }
    }
}

// After `node` ran (or was skipped: no gradient reached it), its leaves have one consumer fewer;
// those with none left are final.
static void leaf_counts_consumed(LeafCounts *table, AutogradNode *node) {
    for (int i = 0; i < node->n_inputs; i++) {
        Tensor *leaf = node->inputs[i];
        if (!is_reported_leaf(leaf)) continue;
        int64_t slot = leaf_slot(table, leaf);
        if (--table->pending[slot] == 0 && ready_hook) ready_hook(leaf, ready_context);
    }
}

void tensor_backward(Tensor *root, Tensor *grad_output) {
    static _Thread_local int64_t pass_counter;
    if (!root->requires_grad) tensor_fatal("backward", "the tensor does not require gradients (no parameter or input with requires_grad reached it)");
    TensorScope scope = tensor_scope_begin();
    bool previous = autograd_set_enabled(false);
    Tensor *seed = grad_output;
    if (!seed) {
        if (tensor_numel(root) != 1) {
            char s[96];
            tensor_fatal("backward", "root has shape %s; give an output gradient for a non-scalar", tensor_shape_string(root, s, sizeof s));
        }
        seed = tensor_empty_like(root);  // on the root's device
        tensor_fill_raw(seed, 1.0);
    } else if (!tensor_same_shape(seed, root)) {
        tensor_fatal("backward", "output gradient shape differs from the root's");
    }
    if (!root->node) {  // a leaf: its gradient is the seed
        accumulate_into(&root->grad, seed);
        if (ready_hook) ready_hook(root, ready_context);
    } else {
        NodeList order = {0};
        topological_order(root->node, ++pass_counter, &order);
        LeafCounts leaves = {0};
        if (ready_hook) leaf_counts_build(&leaves, &order);
        accumulate_node_grad(root->node, seed);
        for (int64_t k = order.count - 1; k >= 0; k--) {
            AutogradNode *node = order.items[k];
            Tensor *g = node->grad_sum;
            if (g) {  // else no gradient flowed here (e.g. only through an argmax)
                node->grad_sum = NULL;
                if (node->owner && node->owner->retains_grad) accumulate_into(&node->owner->grad, g);
                TensorScope inner = tensor_scope_begin();
                node->backward(node, g);
                tensor_scope_end(inner);
                tensor_release(g);
            }
            if (leaves.keys) leaf_counts_consumed(&leaves, node);
        }
        free(leaves.keys);
        free(leaves.pending);
        free(order.items);
    }
    autograd_set_enabled(previous);
    tensor_scope_end(scope);
}

Tensor *tensor_requires_grad(Tensor *t) {
    if (!dtype_is_float(t->dtype)) tensor_fatal("requires_grad", "only floating-point tensors can require gradients");
    t->requires_grad = true;
    return t;
}

void tensor_retain_grad(Tensor *t) { t->retains_grad = true; }

void tensor_zero_grad(Tensor *t) {
    if (t->grad) tensor_fill_raw(t->grad, 0.0);
}

Tensor *tensor_detach(Tensor *t) { return tensor_view_raw(t, t->ndim, t->shape, t->stride, t->offset); }
