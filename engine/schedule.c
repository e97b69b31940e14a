// Learning-rate schedules (formulas in engine/schedule.h) and the --lr-schedule flag parser.
#include "engine/schedule.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Schedule schedule_base(ScheduleKind kind) {
    Schedule s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.warmup_start_factor = 1.0 / 3.0;
    s.gamma = 0.1;
    s.power = 0.75;
    return s;
}

Schedule schedule_constant(void) { return schedule_base(SCHEDULE_CONSTANT); }

Schedule schedule_step(int64_t step_size, double gamma) {
    Schedule s = schedule_base(SCHEDULE_STEP);
    s.step_size = step_size;
    s.gamma = gamma;
    return s;
}

Schedule schedule_cosine(int64_t total_steps, int64_t warmup_steps, double warmup_start_factor,
                         double min_factor) {
    Schedule s = schedule_base(SCHEDULE_COSINE);
    s.total_steps = total_steps;
    s.warmup_steps = warmup_steps;
    s.warmup_start_factor = warmup_start_factor;
    s.min_factor = min_factor;
    return s;
}

Schedule schedule_dann(int64_t total_steps) {
    Schedule s = schedule_base(SCHEDULE_INVERSE);
    s.total_steps = total_steps;
    s.gamma = 10.0;
    s.power = 0.75;
    s.progress = 1;
    return s;
}

Schedule schedule_inv(double gamma, double power) {
    Schedule s = schedule_base(SCHEDULE_INVERSE);
    s.gamma = gamma;
    s.power = power;
    s.progress = 0;
    return s;
}

double schedule_lr(const Schedule *s, double base_lr, int64_t step) {
    if (step < 0) step = 0;
    if (step < s->warmup_steps) {
        // torch LinearLR: start_factor + (end_factor - start_factor) * step / total_iters
        double factor = s->warmup_start_factor +
                        (1.0 - s->warmup_start_factor) * (double)step / (double)s->warmup_steps;
        return base_lr * factor;
    }
    const int64_t t = step - (s->warmup_steps > 0 ? s->warmup_steps : 0);
    const int64_t span = s->total_steps - (s->warmup_steps > 0 ? s->warmup_steps : 0);
    switch (s->kind) {
    case SCHEDULE_CONSTANT:
        return base_lr;
    case SCHEDULE_STEP:
        if (s->step_size <= 0) return base_lr;
        return base_lr * pow(s->gamma, (double)(t / s->step_size));
    case SCHEDULE_MULTISTEP: {
        int passed = 0;
        for (int m = 0; m < s->n_milestones; m++) passed += s->milestones[m] <= t;
        return base_lr * pow(s->gamma, (double)passed);
    }
    case SCHEDULE_COSINE: {
        const double floor_lr = s->min_factor * base_lr;
        if (span <= 0 || t >= span) return floor_lr;
        return floor_lr + (base_lr - floor_lr) * (1.0 + cos(M_PI * (double)t / (double)span)) / 2.0;
    }
    case SCHEDULE_INVERSE: {
        double x = (double)t;
        if (s->progress) x = span > 0 ? (double)t / (double)span : 0.0;
        return base_lr * pow(1.0 + s->gamma * x, -s->power);
    }
    }
    return base_lr;
}

// ---- parser ----

static int parse_double(const char *text, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_int64(const char *text, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE) return -1;
    *out = (int64_t)v;
    return 0;
}

#define FAIL(...)                                                  \
    do {                                                           \
        if (error && error_size) snprintf(error, error_size, __VA_ARGS__); \
        return -1;                                                 \
    } while (0)

int schedule_parse(const char *text, int64_t total_steps, Schedule *out, char *error,
                   size_t error_size) {
    if (error && error_size) error[0] = '\0';
    if (!text) FAIL("--lr-schedule: missing value");
    char buffer[512];
    if (strlen(text) >= sizeof buffer) FAIL("--lr-schedule: value too long");
    strcpy(buffer, text);
    char *options = strchr(buffer, ':');
    if (options) *options++ = '\0';
    const char *name = buffer;

    Schedule s;
    if (strcmp(name, "constant") == 0) s = schedule_constant();
    else if (strcmp(name, "step") == 0) s = schedule_step(0, 0.1);
    else if (strcmp(name, "multistep") == 0) s = schedule_base(SCHEDULE_MULTISTEP);
    else if (strcmp(name, "cosine") == 0) s = schedule_cosine(total_steps, 0, 1.0 / 3.0, 0.0);
    else if (strcmp(name, "dann") == 0) s = schedule_dann(total_steps);
    else if (strcmp(name, "inv") == 0) s = schedule_inv(0.001, 0.75);
    else
        FAIL("--lr-schedule '%s': unknown schedule '%s' (expected constant, step, multistep, cosine, "
             "dann or inv)", text, name);
    s.total_steps = total_steps;

    char *save = NULL;
    for (char *item = options ? strtok_r(options, ",", &save) : NULL; item;
         item = strtok_r(NULL, ",", &save)) {
        char *value = strchr(item, '=');
        if (!value || value == item || value[1] == '\0')
            FAIL("--lr-schedule '%s': expected key=value, got '%s'", text, item);
        *value++ = '\0';
        const char *key = item;
        int bad = 0;
        if (strcmp(key, "warmup") == 0) {
            bad = parse_int64(value, &s.warmup_steps) || s.warmup_steps < 0;
        } else if (strcmp(key, "start") == 0) {
            bad = parse_double(value, &s.warmup_start_factor) || s.warmup_start_factor < 0;
        } else if (strcmp(key, "gamma") == 0 &&
                   (s.kind == SCHEDULE_STEP || s.kind == SCHEDULE_MULTISTEP ||
                    s.kind == SCHEDULE_INVERSE)) {
            bad = parse_double(value, &s.gamma) || s.gamma < 0;
        } else if (strcmp(key, "every") == 0 && s.kind == SCHEDULE_STEP) {
            bad = parse_int64(value, &s.step_size) || s.step_size <= 0;
        } else if (strcmp(key, "power") == 0 && s.kind == SCHEDULE_INVERSE) {
            bad = parse_double(value, &s.power);
        } else if (strcmp(key, "min") == 0 && s.kind == SCHEDULE_COSINE) {
            bad = parse_double(value, &s.min_factor) || s.min_factor < 0;
        } else if (strcmp(key, "milestones") == 0 && s.kind == SCHEDULE_MULTISTEP) {
            s.n_milestones = 0;
            for (char *m = value; *m && !bad;) {
                char *slash = strchr(m, '/');
                if (slash) *slash = '\0';
                if (s.n_milestones == SCHEDULE_MAX_MILESTONES)
                    FAIL("--lr-schedule '%s': at most %d milestones", text, SCHEDULE_MAX_MILESTONES);
                int64_t v;
                bad = parse_int64(m, &v) || v < 0 ||
                      (s.n_milestones > 0 && v <= s.milestones[s.n_milestones - 1]);
                if (!bad) s.milestones[s.n_milestones++] = v;
                m = slash ? slash + 1 : m + strlen(m);
                if (slash && *m == '\0') bad = 1;
            }
        } else {
            FAIL("--lr-schedule '%s': unknown option '%s' for schedule '%s'", text, key, name);
        }
        if (bad) FAIL("--lr-schedule '%s': bad value '%s' for '%s'", text, value, key);
    }

    if (s.kind == SCHEDULE_STEP && s.step_size <= 0)
        FAIL("--lr-schedule '%s': step needs every=N (steps between decays)", text);
    if (s.kind == SCHEDULE_MULTISTEP && s.n_milestones == 0)
        FAIL("--lr-schedule '%s': multistep needs milestones=A/B/...", text);
    if ((s.kind == SCHEDULE_COSINE || (s.kind == SCHEDULE_INVERSE && s.progress)) &&
        total_steps <= s.warmup_steps)
        FAIL("--lr-schedule '%s': needs a run longer than the warm-up (total steps %lld, warm-up "
             "%lld)", text, (long long)total_steps, (long long)s.warmup_steps);
    *out = s;
    return 0;
}
