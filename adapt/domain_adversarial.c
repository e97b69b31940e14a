// DANN's domain discriminator, loss and reversal schedules (adapt/domain_adversarial.h).
#include "adapt/domain_adversarial.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void domain_discriminator_create(DomainDiscriminator *d, ParamStore *store, const char *prefix, int64_t in_features,
                                 int64_t hidden, Rng *rng) {
    char name[160];
    d->fc1 = linear_create(store, param_name(name, sizeof name, "%s0", prefix), in_features, hidden, true, rng);
    d->bn1 = batchnorm_create(store, param_name(name, sizeof name, "%s1", prefix), hidden);
    d->fc2 = linear_create(store, param_name(name, sizeof name, "%s3", prefix), hidden, hidden, true, rng);
    d->bn2 = batchnorm_create(store, param_name(name, sizeof name, "%s4", prefix), hidden);
    d->fc3 = linear_create(store, param_name(name, sizeof name, "%s6.0", prefix), hidden, 1, true, rng);
}

Tensor *domain_discriminator_forward(DomainDiscriminator *d, Tensor *features, bool training) {
    Tensor *h = batchnorm_relu_forward(&d->bn1, linear_forward(&d->fc1, features), training);
    h = batchnorm_relu_forward(&d->bn2, linear_forward(&d->fc2, h), training);
    return linear_forward(&d->fc3, h);
}

DomainAdversarialResult domain_adversarial_loss(DomainDiscriminator *d, Tensor *f_s, Tensor *f_t, double lambda, bool training) {
    int64_t Bs = f_s->shape[0], Bt = f_t->shape[0];
    Tensor *both[2] = {f_s, f_t};
    Tensor *logits = domain_discriminator_forward(d, op_grad_reverse(op_concat(both, 2, 0), lambda), training);
    Tensor *d_s = op_narrow(logits, 0, 0, Bs), *d_t = op_narrow(logits, 0, Bs, Bt);
    Device device = logits->storage->device;
    Tensor *ones = tensor_full(DTYPE_F32, SHAPE(Bs, 1), 1.0), *zeros = tensor_zeros(DTYPE_F32, SHAPE(Bt, 1));
    if (device.kind != DEVICE_CPU) ones = op_to_device(ones, device), zeros = op_to_device(zeros, device);
    Tensor *loss = op_mul_scalar(op_add(op_bce_with_logits(d_s, ones, NULL, REDUCTION_MEAN),
                                        op_bce_with_logits(d_t, zeros, NULL, REDUCTION_MEAN)),
                                 0.5);
    // Accuracy: sigmoid(z) >= 0.5 exactly when z >= 0.
    Tensor *host = op_to_device(tensor_detach(logits), device_cpu());
    const float *z = tensor_f32(op_contiguous(host));
    int64_t right_s = 0, right_t = 0;
    for (int64_t i = 0; i < Bs; i++) right_s += z[i] >= 0;
    for (int64_t i = 0; i < Bt; i++) right_t += z[Bs + i] < 0;
    DomainAdversarialResult result = {.loss = loss,
                                      .accuracy = 0.5 * ((double)right_s / (double)Bs + (double)right_t / (double)Bt)};
    return result;
}

int grl_schedule_parse(const char *text, GrlSchedule *out, char *error, size_t error_size) {
    GrlSchedule s = {.kind = GRL_PAPER, .alpha = 1.0, .lo = 0.0, .hi = 1.0, .max_iters = 1000};
    if (!strcmp(text, "paper")) {
        *out = s;
        return 0;
    }
    if (!strncmp(text, "constant:", 9)) {
        char *end;
        s.kind = GRL_CONSTANT;
        s.value = strtod(text + 9, &end);
        if (end == text + 9 || *end || !(s.value >= 0))
            return snprintf(error, error_size, "\"%s\": expected constant:X with X >= 0", text), -1;
        *out = s;
        return 0;
    }
    if (!strncmp(text, "warm-start", 10) && (text[10] == 0 || text[10] == ':')) {
        s.kind = GRL_WARM_START;
        char options[256];
        snprintf(options, sizeof options, "%s", text[10] ? text + 11 : "");
        char *save = NULL;
        for (char *item = strtok_r(options, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(item, '='), *end = NULL;
            double v = eq ? strtod(eq + 1, &end) : 0;
            if (!eq || end == eq + 1 || *end) return snprintf(error, error_size, "\"%s\": expected KEY=VALUE in \"%s\"", item, text), -1;
            *eq = 0;
            if (!strcmp(item, "alpha")) s.alpha = v;
            else if (!strcmp(item, "lo")) s.lo = v;
            else if (!strcmp(item, "hi")) s.hi = v;
            else if (!strcmp(item, "max_iters") && v > 0) s.max_iters = v;
            else return snprintf(error, error_size, "\"%s\": unknown option %s (alpha, lo, hi, max_iters > 0)", text, item), -1;
        }
        *out = s;
        return 0;
    }
    return snprintf(error, error_size, "\"%s\": expected paper, warm-start[:alpha=A,lo=L,hi=H,max_iters=N] or constant:X", text), -1;
}

double grl_coefficient(const GrlSchedule *s, int64_t step, int64_t total_steps) {
    switch (s->kind) {
    case GRL_CONSTANT: return s->value;
    case GRL_WARM_START:
        return 2.0 * (s->hi - s->lo) / (1.0 + exp(-s->alpha * (double)step / s->max_iters)) - (s->hi - s->lo) + s->lo;
    default: {
        double p = total_steps > 0 ? (double)step / (double)total_steps : 1.0;
        return 2.0 / (1.0 + exp(-10.0 * p)) - 1.0;
    }
    }
}
