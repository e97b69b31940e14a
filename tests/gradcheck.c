#include "tests/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static char checked_ops[8192];
static Rng gradcheck_rng = {.seed = 1234, .stream = 77, .offset = 0};

Tensor *gradcheck_input(Shape shape, double scale, double shift) {
    Tensor *t = tensor_empty(DTYPE_F64, shape);
    rng_fill_normal_f64(&gradcheck_rng, tensor_f64(t), tensor_numel(t), shift, scale);
    return tensor_requires_grad(t);
}

static bool already_listed(const char *name) {
    size_t length = strlen(name);
    for (const char *at = strstr(checked_ops, name); at; at = strstr(at + 1, name)) {
        bool starts = at == checked_ops || at[-1] == ' ';
        bool ends = at[length] == ',' || at[length] == 0;
        if (starts && ends) return true;
    }
    return false;
}

void gradcheck_record_checked(const char *name) {
    if (already_listed(name)) return;
    size_t used = strlen(checked_ops);
    snprintf(checked_ops + used, sizeof checked_ops - used, "%s%s", used ? ", " : "", name);
}

const char *gradcheck_checked_ops(void) { return checked_ops; }

static double probe_loss(GradcheckFn fn, void *context, Tensor **inputs, Tensor *weights) {
    TensorScope scope = tensor_scope_begin();
    bool previous = autograd_set_enabled(false);
    Tensor *y = fn(inputs, context);
    double total = tensor_item(op_sum_all(op_mul(op_to_dtype(y, DTYPE_F64), weights)));
    autograd_set_enabled(previous);
    tensor_scope_end(scope);
    return total;
}

bool gradcheck(const char *name, GradcheckFn fn, void *context, int n_inputs, Tensor **inputs) {
    // eps 1e-6 in f64: truncation error O(eps^2 * f''') ~ 1e-12, rounding O(1e-16 / eps) ~ 1e-10,
    // so 1e-6 absolute + 1e-5 relative separates a right gradient from a wrong one by orders.
    const double eps = 1e-6, atol = 1e-6, rtol = 1e-5;
    TensorScope scope = tensor_scope_begin();
    Tensor *y = fn(inputs, context);
    Tensor *weights = tensor_empty(DTYPE_F64, tensor_shape(y));
    rng_fill_normal_f64(&gradcheck_rng, tensor_f64(weights), tensor_numel(weights), 0.0, 1.0);
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && inputs[i]->grad) tensor_zero_grad(inputs[i]);
    Tensor *loss = op_sum_all(op_mul(op_to_dtype(y, DTYPE_F64), weights));
    tensor_backward(loss, NULL);
    bool ok = true;
    for (int i = 0; i < n_inputs && ok; i++) {
        Tensor *x = inputs[i];
        if (!x || !x->requires_grad) continue;
        if (!x->grad) {
            printf("  gradcheck %s: input %d received no gradient\n", name, i);
            ok = false;
            break;
        }
        int64_t n = tensor_numel(x);
        for (int64_t j = 0; j < n; j++) {
            double original = tensor_get(x, j);
            tensor_set(x, j, original + eps);
            double plus = probe_loss(fn, context, inputs, weights);
            tensor_set(x, j, original - eps);
            double minus = probe_loss(fn, context, inputs, weights);
            tensor_set(x, j, original);
            double numeric = (plus - minus) / (2 * eps);
            double analytic = tensor_get(x->grad, j);
            if (!(fabs(analytic - numeric) <= atol + rtol * fabs(numeric))) {
                printf("  gradcheck %s: input %d element %lld: autograd %.10g, finite differences %.10g\n", name, i,
                       (long long)j, analytic, numeric);
                ok = false;
                break;
            }
        }
    }
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && inputs[i]->grad) {
            tensor_release(inputs[i]->grad);
            inputs[i]->grad = NULL;
        }
    tensor_scope_end(scope);
    if (ok) gradcheck_record_checked(name);
    return ok;
}
