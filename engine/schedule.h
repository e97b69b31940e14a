// Learning-rate schedules as pure functions of the step: lr = schedule_lr(s, base_lr, step), where
// step counts optimizer steps already taken (0 for the first step), so the training loop does
//     opt->lr = schedule_lr(&schedule, base_lr, opt->step); optimizer_step(opt, params, grads);
// which matches PyTorch's "optimizer.step(); scheduler.step()" order.
//
// Every kind can start with a linear warm-up: for step < warmup_steps the factor is
// warmup_start_factor + (1 - warmup_start_factor) * step / warmup_steps (torch LinearLR). After the
// warm-up the main schedule runs on t = step - warmup_steps over total_steps - warmup_steps steps
// (torch SequentialLR([LinearLR, main], milestones=[warmup_steps])).
//
//   SCHEDULE_CONSTANT   base_lr.
//   SCHEDULE_STEP       base_lr * gamma^floor(t / step_size)                    (torch StepLR)
//   SCHEDULE_MULTISTEP  base_lr * gamma^(number of milestones <= t)             (torch MultiStepLR)
//   SCHEDULE_COSINE     floor + (base_lr - floor) * (1 + cos(pi * t / T)) / 2, T = total - warmup,
//                       floor = min_factor * base_lr; held at the floor for t >= T (torch's
//                       CosineAnnealingLR would rise again past T_max; timm holds it).
//   SCHEDULE_INVERSE    base_lr * (1 + gamma * x)^(-power), the "annealing" of
//                       - the DANN paper (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016):
//                         mu_p = mu_0 / (1 + alpha p)^beta with p = t / T in [0, 1], alpha = 10,
//                         beta = 0.75 (progress = 1);
//                       - Caffe's "inv" policy, used by tllib (Transfer-Learning-Library examples:
//                         LambdaLR(lambda x: lr * (1 + lr_gamma * x) ** (-lr_decay)), lr_gamma = 0.001,
//                         lr_decay = 0.75) and the CDAN / MDD code: x = t, the iteration count
//                         (progress = 0).
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SCHEDULE_CONSTANT,
    SCHEDULE_STEP,
    SCHEDULE_MULTISTEP,
    SCHEDULE_COSINE,
    SCHEDULE_INVERSE,
} ScheduleKind;

#define SCHEDULE_MAX_MILESTONES 16

typedef struct {
    ScheduleKind kind;
    int64_t total_steps;          // cosine and progress-form inverse
    int64_t warmup_steps;         // 0: no warm-up
    double warmup_start_factor;   // factor at step 0 of the warm-up
    double gamma;                 // step / multistep: decay factor; inverse: gamma
    int64_t step_size;            // step: decay every step_size steps
    int n_milestones;             // multistep, increasing
    int64_t milestones[SCHEDULE_MAX_MILESTONES];
    double min_factor;            // cosine: floor as a fraction of base_lr
    double power;                 // inverse
    int progress;                 // inverse: 1 = x is t / T (DANN paper), 0 = x is t (Caffe "inv", tllib)
} Schedule;

// Constructors with the usual defaults (no warm-up; set warmup_steps / warmup_start_factor after).
Schedule schedule_constant(void);
Schedule schedule_step(int64_t step_size, double gamma);
Schedule schedule_cosine(int64_t total_steps, int64_t warmup_steps, double warmup_start_factor,
                         double min_factor);
Schedule schedule_dann(int64_t total_steps);  // inverse, progress form, gamma 10, power 0.75
Schedule schedule_inv(double gamma, double power);  // inverse, iteration form (tllib: 0.001, 0.75)

double schedule_lr(const Schedule *s, double base_lr, int64_t step);

// Parses a --lr-schedule flag:
//   constant | step:every=N[,gamma=G] | multistep:milestones=A/B/C[,gamma=G]
//   | cosine[:min=F] | dann[:gamma=G,power=P] | inv[:gamma=G,power=P]
// each optionally with warmup=N and start=F (warm-up start factor, default 1/3 as torch LinearLR).
// Defaults: gamma 0.1 (step, multistep), min 0 (cosine), dann gamma 10 power 0.75, inv gamma 0.001
// power 0.75. total_steps is the run length (needed by cosine and dann). Returns 0, or -1 with a
// one-line message in error.
int schedule_parse(const char *text, int64_t total_steps, Schedule *out, char *error,
                   size_t error_size);
