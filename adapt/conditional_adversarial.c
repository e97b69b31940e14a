// CDAN's conditional domain-adversarial loss (adapt/conditional_adversarial.h).
#include "adapt/conditional_adversarial.h"

#include <math.h>
#include <stdio.h>

#include "engine/autograd.h"

void conditional_adversarial_create(ConditionalAdversarial *c, ParamStore *store, const char *prefix, int64_t features,
                                    int64_t classes, int64_t hidden, bool entropy_conditioning, bool randomized,
                                    int64_t randomized_dim, Rng *rng) {
    char name[160];
    *c = (ConditionalAdversarial){.entropy_conditioning = entropy_conditioning, .randomized = randomized,
                                  .randomized_dim = randomized_dim};
    if (randomized) {
        c->random_f = params_add_buffer(store, param_name(name, sizeof name, "%smap.Rf", prefix), SHAPE(features, randomized_dim));
        c->random_g = params_add_buffer(store, param_name(name, sizeof name, "%smap.Rg", prefix), SHAPE(classes, randomized_dim));
        if (rng) init_normal(c->random_f, rng, 0.0, 1.0), init_normal(c->random_g, rng, 0.0, 1.0);
    }
    int64_t inputs = randomized ? randomized_dim : features * classes;
    domain_discriminator_create(&c->discriminator, store, param_name(name, sizeof name, "%sdomain_discri.", prefix), inputs,
                                hidden, rng);
}

DomainAdversarialResult conditional_adversarial_loss(ConditionalAdversarial *c, Tensor *logits_s, Tensor *f_s,
                                                     Tensor *logits_t, Tensor *f_t, double lambda, bool training) {
    int64_t Bs = f_s->shape[0], Bt = f_t->shape[0], B = Bs + Bt;
    Tensor *fs[2] = {f_s, f_t}, *gs[2] = {logits_s, logits_t};
    Tensor *f = op_concat(fs, 2, 0);
    Tensor *g = op_softmax(tensor_detach(op_concat(gs, 2, 0)), 1);
    int64_t C = g->shape[1], F = f->shape[1];
    Tensor *h;
    if (c->randomized) {
        h = op_mul_scalar(op_mul(op_matmul(f, c->random_f), op_matmul(g, c->random_g)), 1.0 / sqrt((double)c->randomized_dim));
    } else {
        h = op_reshape(op_mul(op_unsqueeze(g, 2), op_unsqueeze(f, 1)), SHAPE(B, C * F));
    }
    Tensor *d = domain_discriminator_forward(&c->discriminator, op_grad_reverse(h, lambda), training);
    Device device = d->storage->device;
    Tensor *labels = tensor_zeros(DTYPE_F32, SHAPE(B, 1));
    for (int64_t i = 0; i < Bs; i++) tensor_f32(labels)[i] = 1.0f;
    if (device.kind != DEVICE_CPU) labels = op_to_device(labels, device);
    Tensor *weight = NULL;
    if (c->entropy_conditioning) {
        // w = 1 + exp(-H(g)), H = -sum g log(g + 1e-5), scaled to sum B (no gradient: g is detached).
        const int classes_dim[1] = {1};
        Tensor *entropy = op_neg(op_sum(op_mul(g, op_log(op_add_scalar(g, 1e-5))), classes_dim, 1, true));  // [B, 1]
        Tensor *w = op_add_scalar(op_exp(op_neg(entropy)), 1.0);
        weight = op_mul_scalar(op_div(w, op_sum_all(w)), (double)B);
    }
    Tensor *loss = op_bce_with_logits(d, labels, weight, REDUCTION_MEAN);
    Tensor *host = op_contiguous(op_to_device(tensor_detach(d), device_cpu()));
    int64_t right = 0;
    for (int64_t i = 0; i < B; i++) right += (tensor_f32(host)[i] >= 0) == (i < Bs);
    return (DomainAdversarialResult){.loss = loss, .accuracy = (double)right / (double)B};
}
