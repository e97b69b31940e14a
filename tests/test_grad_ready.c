// autograd's gradient-ready hook (engine/autograd.h), on which data-parallel training starts each
// bucket's all-reduce during backward: it must fire exactly once per leaf the pass reaches, only
// after that leaf's last contribution (a leaf used twice, a leaf used twice by one op), while the
// pass is still running (earlier layers' gradients not yet computed), also for a leaf whose
// consumers gave it no gradient, and never for unreached leaves, leaves without requires_grad or
// intermediate tensors.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/tensor.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

#define MAX_EVENTS 16

typedef struct {
    int count;
    Tensor *leaf[MAX_EVENTS];
    float grad[MAX_EVENTS][4];    // the leaf's gradient when it was reported
    bool had_grad[MAX_EVENTS];
    Tensor *watched;              // a leaf whose gradient is sampled at every report
    float watched_grad[MAX_EVENTS][4];
    bool watched_had_grad[MAX_EVENTS];
} Events;

static void copy_grad(const Tensor *t, float *out, bool *had) {
    *had = t && t->grad;
    if (*had) memcpy(out, tensor_f32(t->grad), (size_t)tensor_numel(t) * sizeof(float));
}

static void record(Tensor *leaf, void *context) {
    Events *e = context;
    if (e->count == MAX_EVENTS) return;
    e->leaf[e->count] = leaf;
    copy_grad(leaf, e->grad[e->count], &e->had_grad[e->count]);
    copy_grad(e->watched, e->watched_grad[e->count], &e->watched_had_grad[e->count]);
    e->count++;
}

static int reports_of(const Events *e, const Tensor *leaf) {
    int n = 0;
    for (int i = 0; i < e->count; i++) n += e->leaf[i] == leaf;
    return n;
}

static int index_of(const Events *e, const Tensor *leaf) {
    for (int i = 0; i < e->count; i++)
        if (e->leaf[i] == leaf) return i;
    return -1;
}

static Tensor *leaf3(float a, float b, float c) {
    return tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(3), (float[]){a, b, c}));
}

// loss = sum(c * (b * (a * x)) + a): `a` is used at the bottom and at the top of the graph, so its
// first contribution (1 from the top) arrives long before its last one (b * c * x at the bottom).
TEST(a_leaf_used_twice_is_reported_after_its_last_contribution) {
    TensorScope scope = tensor_scope_begin();
    Tensor *a = leaf3(1, 2, 3), *b = leaf3(-1, 0.5f, 2), *c = leaf3(4, -3, 0.25f);
    Tensor *x = tensor_from_data(DTYPE_F32, SHAPE(3), (float[]){0.5f, 1, -2});  // no gradient wanted
    Tensor *loss = op_sum_all(op_add(op_mul(c, op_mul(b, op_mul(a, x))), a));
    Events e = {.watched = a};
    void *old_context;
    GradReadyHook old = autograd_set_grad_ready_hook(record, &e, &old_context);
    tensor_backward(loss, NULL);
    autograd_set_grad_ready_hook(old, old_context, NULL);
    CHECK_MSG(e.count == 3, "%d reports", e.count);
    CHECK(reports_of(&e, a) == 1 && reports_of(&e, b) == 1 && reports_of(&e, c) == 1);
    CHECK(reports_of(&e, x) == 0);
    // Backward order: c's gradient is final first, a's last.
    int ia = index_of(&e, a), ib = index_of(&e, b), ic = index_of(&e, c);
    CHECK_MSG(ic >= 0 && ib >= 0 && ia >= 0 && ic < ib && ib < ia, "order c %d, b %d, a %d", ic, ib, ia);
    // Each reported gradient is the final one.
    Tensor *leaves[3] = {a, b, c};
    for (int k = 0; k < 3; k++) {
        int i = index_of(&e, leaves[k]);
        CHECK(i >= 0 && e.had_grad[i] && memcmp(e.grad[i], tensor_f32(leaves[k]->grad), 3 * sizeof(float)) == 0);
    }
    float expected_a[3];
    for (int j = 0; j < 3; j++) expected_a[j] = 1 + tensor_f32(b)[j] * tensor_f32(c)[j] * tensor_f32(x)[j];
    for (int j = 0; j < 3; j++) CHECK_CLOSE(tensor_f32(a->grad)[j], expected_a[j], 0, 1e-6);
    // When c was reported the pass was still running: a held only its first contribution (1).
    CHECK_MSG(ic >= 0 && e.watched_had_grad[ic] && e.watched_grad[ic][0] == 1 && e.watched_grad[ic][1] == 1 &&
                  e.watched_grad[ic][2] == 1,
              "a's gradient when c was reported: %g %g %g", ic >= 0 ? e.watched_grad[ic][0] : -1.0,
              ic >= 0 ? e.watched_grad[ic][1] : -1.0, ic >= 0 ? e.watched_grad[ic][2] : -1.0);
    tensor_scope_end(scope);
}

TEST(a_leaf_used_twice_by_one_op_is_reported_once) {
    TensorScope scope = tensor_scope_begin();
    Tensor *w = leaf3(1, -2, 3);
    Tensor *loss = op_sum_all(op_mul(w, w));
    Events e = {0};
    GradReadyHook old = autograd_set_grad_ready_hook(record, &e, NULL);
    tensor_backward(loss, NULL);
    autograd_set_grad_ready_hook(old, NULL, NULL);
    CHECK_MSG(e.count == 1 && e.leaf[0] == w, "%d reports", e.count);
    CHECK(e.had_grad[0] && e.grad[0][0] == 2 && e.grad[0][1] == -4 && e.grad[0][2] == 6);
    tensor_scope_end(scope);
}

// A test op whose backward gives its first input the gradient and its second none (like an index
// argument, or a branch the output does not depend on).
static void first_input_only_backward(AutogradNode *node, Tensor *grad_output) {
    autograd_pass_grad(node, 0, grad_output);
    autograd_pass_grad(node, 1, NULL);
}

TEST(leaves_without_gradient) {
    TensorScope scope = tensor_scope_begin();
    Tensor *u = leaf3(1, 2, 3), *p = leaf3(4, 5, 6), *unused = leaf3(7, 8, 9);
    Tensor *frozen = tensor_from_data(DTYPE_F32, SHAPE(3), (float[]){1, 1, 1});  // requires_grad off
    bool was = autograd_set_enabled(false);
    Tensor *out = op_mul_scalar(u, 1.0);
    autograd_set_enabled(was);
    Tensor *inputs[2] = {u, p};
    autograd_record(out, "first_input_only", first_input_only_backward, 2, inputs);
    Tensor *hidden = op_mul(out, frozen);  // an intermediate tensor: never reported
    Tensor *loss = op_sum_all(hidden);
    (void)unused;
    Events e = {0};
    GradReadyHook old = autograd_set_grad_ready_hook(record, &e, NULL);
    tensor_backward(loss, NULL);
    autograd_set_grad_ready_hook(old, NULL, NULL);
    CHECK_MSG(e.count == 2, "%d reports", e.count);
    CHECK(reports_of(&e, u) == 1 && e.had_grad[index_of(&e, u) < 0 ? 0 : index_of(&e, u)]);
    // p: its one consumer ran and gave it nothing: final (no gradient), reported once.
    int ip = index_of(&e, p);
    CHECK(reports_of(&e, p) == 1 && ip >= 0 && !e.had_grad[ip] && p->grad == NULL);
    CHECK(reports_of(&e, unused) == 0 && reports_of(&e, frozen) == 0 && reports_of(&e, hidden) == 0 &&
          reports_of(&e, out) == 0);
    tensor_scope_end(scope);
}

TEST(a_leaf_root_and_hook_removal) {
    TensorScope scope = tensor_scope_begin();
    Tensor *s = tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(), (float[]){2}));
    Events e = {0};
    GradReadyHook old = autograd_set_grad_ready_hook(record, &e, NULL);
    tensor_backward(s, NULL);  // the root is the leaf: reported with its seed
    CHECK(e.count == 1 && e.leaf[0] == s && e.had_grad[0] && e.grad[0][0] == 1);
    // Restoring returns ours; with no hook nothing is reported.
    CHECK(autograd_set_grad_ready_hook(old, NULL, NULL) == record);
    Tensor *w = leaf3(1, 2, 3);
    tensor_backward(op_sum_all(op_mul(w, w)), NULL);
    CHECK(e.count == 1);
    tensor_scope_end(scope);
}

int main(void) {
    RUN_TEST(a_leaf_used_twice_is_reported_after_its_last_contribution);
    RUN_TEST(a_leaf_used_twice_by_one_op_is_reported_once);
    RUN_TEST(leaves_without_gradient);
    RUN_TEST(a_leaf_root_and_hook_removal);
    return test_summary();
}
