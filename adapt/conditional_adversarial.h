// CDAN, conditional domain-adversarial training (Long et al. 2018, "Conditional Adversarial Domain
// Adaptation"), as tllib's ConditionalDomainAdversarialLoss computes it: the discriminator sees the
// features f joined with the classifier's predictions g = softmax(logits) (detached), so it aligns
// the joint distribution of features and classes rather than the features alone.
//
//   map            multilinear: h = g (x) f, the outer product flattened to [B, C F] (index c F + j
//                  holds g_c f_j); randomized: h = (f R_f) * (g R_g) / sqrt(d) with fixed random
//                  R_f [F, d], R_g [C, d] ~ N(0, 1) (the paper's choice when C F is large)
//   loss           BCE(D(R(h)), [1 for source; 0 for target]) averaged over the 2B rows; with
//                  entropy conditioning (CDAN+E) each row weighted by w = 1 + exp(-H(g)),
//                  H(g) = -sum g log(g + 1e-5), normalised to mean 1 over the batch
//   accuracy       the discriminator's over all rows
// The discriminator is DANN's (adapt/domain_adversarial.h) on C F (or d) inputs.
#pragma once
#include <stdbool.h>

#include "adapt/domain_adversarial.h"

typedef struct {
    bool entropy_conditioning;
    bool randomized;
    int64_t randomized_dim;        // d (tllib: 1024)
    Tensor *random_f, *random_g;   // randomized: [F, d], [C, d] buffers ("map.Rf", "map.Rg")
    DomainDiscriminator discriminator;
} ConditionalAdversarial;

// Registers the discriminator (and the random matrices when randomized, drawn from rng) under
// prefix: "<prefix>domain_discri.*", "<prefix>map.Rf", "<prefix>map.Rg".
void conditional_adversarial_create(ConditionalAdversarial *c, ParamStore *store, const char *prefix, int64_t features,
                                    int64_t classes, int64_t hidden, bool entropy_conditioning, bool randomized,
                                    int64_t randomized_dim, Rng *rng);
// logits_s [Bs, C], f_s [Bs, F], logits_t, f_t likewise; lambda the reversal coefficient.
DomainAdversarialResult conditional_adversarial_loss(ConditionalAdversarial *c, Tensor *logits_s, Tensor *f_s,
                                                     Tensor *logits_t, Tensor *f_t, double lambda, bool training);
