// Unsupervised domain adaptation steps (adapt/uda.h).
#include "adapt/uda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/autograd.h"

static const char *const METHOD_NAMES[] = {"source-only", "dann", "cdan"};

int uda_method_from_name(const char *name) {
    for (int i = 0; i < (int)(sizeof METHOD_NAMES / sizeof METHOD_NAMES[0]); i++)
        if (!strcmp(name, METHOD_NAMES[i])) return i;
    return -1;
}

const char *uda_method_name(UdaMethod method) { return METHOD_NAMES[method]; }

const char *uda_method_names(void) { return "source-only, dann, cdan"; }

UdaOptions uda_default_options(UdaMethod method) {
    UdaOptions o = {.method = method, .trade_off = 1.0, .discriminator_hidden = 1024, .seed = 0,
                    .entropy_conditioning = true, .randomized = false, .randomized_dim = 1024};
    char error[64];
    grl_schedule_parse("paper", &o.grl, error, sizeof error);
    return o;
}

UdaTrainer *uda_trainer_create(Classifier *model, const UdaOptions *options, char *error, size_t error_size) {
    if (options->trade_off < 0 || options->discriminator_hidden < 1) {
        snprintf(error, error_size, "the trade-off must not be negative and the discriminator width positive");
        return NULL;
    }
    UdaTrainer *t = calloc(1, sizeof *t);
    if (!t) tensor_fatal("uda", "out of memory");
    t->options = *options;
    t->model = model;
    if (options->method == UDA_DANN) {
        // Its own stream of the seed: the classifier's initialisation uses stream 0.
        Rng rng = rng_make(options->seed, 7);
        t->modules = params_new();
        domain_discriminator_create(&t->discriminator, t->modules, "domain_discri.", model->output_feature_dim,
                                    options->discriminator_hidden, &rng);
        params_finalize(t->modules);
    }
    if (options->method == UDA_CDAN) {
        if (options->randomized && options->randomized_dim < 1) {
            snprintf(error, error_size, "the randomized map's width must be positive");
            free(t);
            return NULL;
        }
        Rng rng = rng_make(options->seed, 7);
        t->modules = params_new();
        conditional_adversarial_create(&t->conditional, t->modules, "", model->output_feature_dim, model->options.num_classes,
                                       options->discriminator_hidden, options->entropy_conditioning, options->randomized,
                                       options->randomized_dim, &rng);
        params_finalize(t->modules);
    }
    return t;
}

void uda_trainer_free(UdaTrainer *t) {
    if (!t) return;
    params_free(t->modules);
    free(t);
}

// Top-1 accuracy of logits against labels, on the host.
static double batch_accuracy(Tensor *logits, Tensor *labels) {
    Tensor *predicted = op_to_device(op_argmax(tensor_detach(logits), 1, false), device_cpu());
    Tensor *truth = op_contiguous(op_to_device(labels, device_cpu()));
    int64_t n = predicted->shape[0], right = 0;
    for (int64_t i = 0; i < n; i++) right += tensor_i64(predicted)[i] == tensor_i64(truth)[i];
    return n ? (double)right / (double)n : NAN;
}

Tensor *uda_step_loss(UdaTrainer *t, Tensor *x_s, Tensor *y_s, Tensor *x_t, int64_t step, int64_t total_steps,
                      UdaStepStats *stats) {
    *stats = (UdaStepStats){.transfer = 0, .domain_accuracy = NAN, .coefficient = NAN};
    int64_t Bs = x_s->shape[0], Bt = x_t->shape[0];
    // One forward over both domains (tllib: x = torch.cat((x_s, x_t)); y, f = classifier(x)).
    Tensor *both[2] = {x_s, x_t};
    ClassifierOutput out = classifier_run(t->model, op_concat(both, 2, 0), true, 0);
    Tensor *logits_s = op_narrow(out.logits, 0, 0, Bs);
    Tensor *classification = op_cross_entropy(logits_s, y_s, cross_entropy_defaults());
    Tensor *loss = classification;
    stats->classification = tensor_item(classification);
    stats->source_accuracy = batch_accuracy(logits_s, y_s);
    if (t->options.method == UDA_DANN) {
        double lambda = grl_coefficient(&t->options.grl, step, total_steps);
        DomainAdversarialResult adversarial = domain_adversarial_loss(&t->discriminator, op_narrow(out.features, 0, 0, Bs),
                                                                      op_narrow(out.features, 0, Bs, Bt), lambda, true);
        stats->transfer = tensor_item(adversarial.loss);
        stats->domain_accuracy = adversarial.accuracy;
        stats->coefficient = lambda;
        loss = op_add(loss, op_mul_scalar(adversarial.loss, t->options.trade_off));
    } else if (t->options.method == UDA_CDAN) {
        double lambda = grl_coefficient(&t->options.grl, step, total_steps);
        DomainAdversarialResult adversarial = conditional_adversarial_loss(
            &t->conditional, logits_s, op_narrow(out.features, 0, 0, Bs), op_narrow(out.logits, 0, Bs, Bt),
            op_narrow(out.features, 0, Bs, Bt), lambda, true);
        stats->transfer = tensor_item(adversarial.loss);
        stats->domain_accuracy = adversarial.accuracy;
        stats->coefficient = lambda;
        loss = op_add(loss, op_mul_scalar(adversarial.loss, t->options.trade_off));
    }
    stats->loss = tensor_item(loss);
    return loss;
}
