// Unsupervised domain adaptation: one training step's loss for a method, from a labelled source
// batch and an unlabelled target batch, as the Transfer-Learning-Library's example scripts compute
// it (docs/UDA.md). `tailor uda` runs the loop around it.
//
//   source-only  cross-entropy on the source batch (the target batch still passes through the
//                model in training mode, as in tllib's source_only.py, so BatchNorm sees both)
//   dann         one forward over [x_s; x_t]; cross-entropy on the source half +
//                trade_off * domain-adversarial loss on the bottleneck features (adapt/domain_adversarial.h)
//   cdan         the same with the conditional loss on features and predictions
//                (adapt/conditional_adversarial.h; entropy conditioning and the randomized map as options)
//
// Method modules (the discriminator) live in their own ParamStore, `modules`, trained by their
// own optimizer at the head's learning rate; names as tllib's ("domain_discri.0.weight", ...).
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "adapt/conditional_adversarial.h"
#include "adapt/domain_adversarial.h"
#include "models/classifier.h"

typedef enum { UDA_SOURCE_ONLY, UDA_DANN, UDA_CDAN } UdaMethod;

// "source-only", "dann", "cdan"; -1 for an unknown name.
int uda_method_from_name(const char *name);
const char *uda_method_name(UdaMethod method);
// The list for messages: "source-only, dann, cdan".
const char *uda_method_names(void);

typedef struct {
    UdaMethod method;
    double trade_off;          // weight of the transfer loss (1)
    int64_t discriminator_hidden;  // DANN: 1024
    GrlSchedule grl;           // DANN, CDAN: the reversal coefficient's schedule (paper)
    bool entropy_conditioning; // CDAN: CDAN+E (true)
    bool randomized;           // CDAN: the randomized multilinear map (false)
    int64_t randomized_dim;    // CDAN: its width (1024)
    uint64_t seed;             // initialisation of the method's modules
} UdaOptions;

UdaOptions uda_default_options(UdaMethod method);

typedef struct {
    UdaOptions options;
    Classifier *model;         // borrowed
    ParamStore *modules;       // the method's own modules (finalized), or NULL
    DomainDiscriminator discriminator;
    ConditionalAdversarial conditional;
} UdaTrainer;

// The method's modules for a model (its feature width). NULL with one line in error.
UdaTrainer *uda_trainer_create(Classifier *model, const UdaOptions *options, char *error, size_t error_size);
void uda_trainer_free(UdaTrainer *trainer);

// What a step computed, for logs: every loss term and the method's diagnostics.
typedef struct {
    double loss, classification, transfer;
    double source_accuracy;    // on the source batch
    double domain_accuracy;    // DANN, CDAN: the discriminator's (NAN otherwise)
    double coefficient;        // DANN, CDAN: the reversal coefficient of this step (NAN otherwise)
} UdaStepStats;

// The step's total loss (scalar, with autograd) for source images x_s [B, C, H, W] with labels
// y_s [B] (i64) and target images x_t [B', C, H, W], at `step` of total_steps (schedules).
Tensor *uda_step_loss(UdaTrainer *trainer, Tensor *x_s, Tensor *y_s, Tensor *x_t, int64_t step, int64_t total_steps,
                      UdaStepStats *stats);
