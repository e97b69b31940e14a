// DANN's domain-adversarial training (Ganin et al. 2016, "Domain-Adversarial Training of Neural
// Networks"), as the Transfer-Learning-Library (tllib) implements it: a domain discriminator on the
// features of source and target images, behind a gradient reversal layer, so that minimising one
// loss trains the discriminator to tell the domains apart and the feature extractor to make them
// indistinguishable.
//
//   discriminator   tllib's DomainDiscriminator (batch_norm=True): Linear(F, H) - BatchNorm1d(H) -
//                   ReLU - Linear(H, H) - BatchNorm1d(H) - ReLU - Linear(H, 1), state-dict names
//                   "0.*", "1.*", "3.*", "4.*", "6.0.*" (the final Sequential(Linear, Sigmoid));
//                   H = 1024 in the paper's and tllib's setups
//   loss            0.5 (BCE(D(R(f_s)), 1) + BCE(D(R(f_t)), 0)), one discriminator pass over
//                   [f_s; f_t] (BatchNorm statistics of both domains together), R the gradient
//                   reversal with coefficient lambda; computed from logits (tllib applies a sigmoid
//                   and binary_cross_entropy: the same values, without its log clamp at -100)
//   accuracy        the discriminator's: mean of (sigmoid >= 0.5) == label over both halves
//
// The reversal coefficient follows a schedule over training (grl_coefficient):
//   paper       lambda_p = 2 / (1 + exp(-10 p)) - 1, p = step / total steps (the paper's)
//   warm-start  tllib's WarmStartGradientReverseLayer: 2 (hi - lo) / (1 + exp(-alpha i / N)) -
//               (hi - lo) + lo at iteration i (alpha 1, lo 0, hi 1, N = max_iters 1000)
//   constant    a fixed value
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "models/nn.h"

typedef struct {
    Linear fc1, fc2, fc3;
    BatchNorm bn1, bn2;
} DomainDiscriminator;

// Registers the discriminator under prefix (e.g. "domain_discri.") with nn.Linear / BatchNorm1d's
// default initialisation (rng NULL: zeros, for loading).
void domain_discriminator_create(DomainDiscriminator *d, ParamStore *store, const char *prefix, int64_t in_features,
                                 int64_t hidden, Rng *rng);
// features [B, F] -> logits [B, 1] (before the sigmoid).
Tensor *domain_discriminator_forward(DomainDiscriminator *d, Tensor *features, bool training);

typedef struct {
    Tensor *loss;     // scalar
    double accuracy;  // in [0, 1]
} DomainAdversarialResult;

// The loss on source features f_s [Bs, F] and target features f_t [Bt, F] with reversal
// coefficient lambda (the features' gradient is multiplied by -lambda; the discriminator's is not).
DomainAdversarialResult domain_adversarial_loss(DomainDiscriminator *d, Tensor *f_s, Tensor *f_t, double lambda, bool training);

typedef enum { GRL_PAPER, GRL_WARM_START, GRL_CONSTANT } GrlScheduleKind;
typedef struct {
    GrlScheduleKind kind;
    double value;                     // constant
    double alpha, lo, hi, max_iters;  // warm-start (1, 0, 1, 1000)
} GrlSchedule;

// "paper", "warm-start[:alpha=A,lo=L,hi=H,max_iters=N]" or "constant:X". 0, or -1 with one line in error.
int grl_schedule_parse(const char *text, GrlSchedule *out, char *error, size_t error_size);
// The coefficient at `step` (0-based, steps already done) of a run of total_steps.
double grl_coefficient(const GrlSchedule *schedule, int64_t step, int64_t total_steps);
