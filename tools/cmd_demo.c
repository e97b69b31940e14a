// `tailor demo`: trains a small network on a generated task (no downloads) and evaluates it on
// held-out samples, with a progress bar, a JSONL log and resumable checkpoints. It exercises the
// whole engine: ops, autograd, optimizer, schedule, RNG, safetensors and checkpoints.
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/toy_tasks.h"
#include "engine/checkpoint.h"
#include "engine/fs.h"
#include "engine/json.h"
#include "engine/jsonl.h"
#include "engine/optim.h"
#include "engine/schedule.h"
#include "models/small.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/progress.h"
#include "tools/run_setup.h"

typedef struct {
    bool is_cnn;
    Mlp mlp;
    SmallCnn cnn;
    ParamStore *params;
} DemoModel;

static Tensor *demo_forward(DemoModel *model, Tensor *x, bool training) {
    return model->is_cnn ? small_cnn_forward(&model->cnn, x, training) : mlp_forward(&model->mlp, x);
}

// Loss and accuracy over a whole set, in eval mode, in batches.
static void evaluate(DemoModel *model, const ToyTask *task, double *loss, double *accuracy) {
    int64_t n = task->labels->shape[0], batch = 256, correct = 0;
    double total_loss = 0;
    int64_t *order = malloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) order[i] = i;
    bool previous = autograd_set_enabled(false);
    for (int64_t start = 0; start < n; start += batch) {
        int64_t count = n - start < batch ? n - start : batch;
        TensorScope scope = tensor_scope_begin();
        Tensor *x, *y;
        toy_task_batch(task, order, start, count, &x, &y);
        x = op_to_device(x, model->params->values->device);
        Tensor *logits = demo_forward(model, x, false);
        CrossEntropyOptions sum = cross_entropy_defaults();
        sum.reduction = REDUCTION_SUM;
        total_loss += tensor_item(op_cross_entropy(logits, y, sum));
        Tensor *predicted = op_to_device(op_argmax(logits, 1, false), device_cpu());
        for (int64_t i = 0; i < count; i++) correct += tensor_i64(predicted)[i] == tensor_i64(y)[i];
        tensor_scope_end(scope);
    }
    autograd_set_enabled(previous);
    free(order);
    *loss = total_loss / (double)n;
    *accuracy = (double)correct / (double)n;
}

int command_demo(int argc, char **argv) {
    const char *task_name = "shapes", *optimizer_name = "sgd", *schedule_text = NULL;
    const char *out_dir = "runs/demo", *resume_dir = NULL, *device = "auto";
    int64_t steps = 300, batch_size = 64, samples = 4096, width = 16, seed = 0, checkpoint_every = 100, eval_every = 100, threads = 0;
    double lr = 0.05, momentum = 0.9, weight_decay = 5e-4;
    static const char *const tasks[] = {"shapes", "spirals", NULL};
    static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
    Flag flags[] = {
        {"task", FLAG_STRING, &task_name, "generated task: 16x16 images of 4 shapes (CNN) or 3 spirals (MLP)", tasks},
        {"steps", FLAG_INT, &steps, "training steps", NULL},
        {"batch-size", FLAG_INT, &batch_size, "samples per step", NULL},
        {"samples", FLAG_INT, &samples, "training samples to generate (held-out set: a quarter as many)", NULL},
        {"width", FLAG_INT, &width, "hidden width (channels of the CNN's first stage)", NULL},
        {"optimizer", FLAG_STRING, &optimizer_name, "optimizer", optimizers},
        {"lr", FLAG_DOUBLE, &lr, "base learning rate", NULL},
        {"momentum", FLAG_DOUBLE, &momentum, "SGD momentum (Nesterov)", NULL},
        {"weight-decay", FLAG_DOUBLE, &weight_decay, "weight decay (not applied to biases and norms)", NULL},
        {"lr-schedule", FLAG_STRING, &schedule_text, "constant | step:every=N[,gamma=G] | multistep:milestones=A/B | cosine[:min=F] | dann | inv; each may add warmup=N,start=F (default: cosine with a warm-up of min(20, steps/10))", NULL},
        {"seed", FLAG_INT, &seed, "seed for data, initialisation and order", NULL},
        {"out", FLAG_STRING, &out_dir, "output directory (log.jsonl, checkpoint/)", NULL},
        {"resume", FLAG_STRING, &resume_dir, "checkpoint directory to continue from", NULL},
        {"checkpoint-every", FLAG_INT, &checkpoint_every, "steps between checkpoints (0: only at the end)", NULL},
        {"eval-every", FLAG_INT, &eval_every, "steps between held-out evaluations (0: only at the end)", NULL},
        {"device", FLAG_STRING, &device, "auto | cpu | cuda[:N]", NULL},
        {"threads", FLAG_INT, &threads, "CPU threads (0: all cores)", NULL},
    };
    args_parse("demo", "Train a small network on a generated task and evaluate it on held-out samples.", flags,
               (int)(sizeof flags / sizeof flags[0]), argc, argv, 2);
    if (steps <= 0 || batch_size <= 0 || samples < batch_size || width <= 0 || checkpoint_every < 0 || eval_every < 0) {
        fprintf(stderr, "error: tailor demo: --steps, --batch-size, --width must be positive, --samples >= --batch-size, "
                        "--checkpoint-every/--eval-every >= 0\n");
        return 2;
    }
    // Bounds that keep the generated data and model in memory (a 16x16 image is 1 KiB).
    if (samples > 4000000 || width > 1024 || batch_size > 65536) {
        fprintf(stderr, "error: tailor demo: --samples (at most 4000000), --width (at most 1024) or --batch-size (at most 65536) too large\n");
        return 2;
    }
    char default_schedule[64];
    if (!schedule_text) {
        snprintf(default_schedule, sizeof default_schedule, "cosine:warmup=%lld", (long long)(steps / 10 < 20 ? steps / 10 : 20));
        schedule_text = default_schedule;
    }
    Device run_device = apply_device_and_threads("demo", device, threads);
    char error[1024];
    Schedule schedule;
    if (schedule_parse(schedule_text, steps, &schedule, error, sizeof error) != 0) {
        fprintf(stderr, "error: tailor demo: --lr-schedule: %s\n", error);
        return 2;
    }
    if (fs_make_directories(out_dir) != 0) {
        fprintf(stderr, "error: tailor demo: cannot create --out directory %s: %s\n", out_dir, strerror(errno));
        return 1;
    }

    // Data: fixed by the seed, so a resumed run regenerates exactly the same sets.
    Rng data_rng = rng_make((uint64_t)seed, 100);
    DemoModel model = {.is_cnn = strcmp(task_name, "shapes") == 0};
    ToyTask train, test;
    if (model.is_cnn) {
        train = toy_shapes(samples, 16, &data_rng);
        test = toy_shapes(samples / 4, 16, &data_rng);
        model.cnn = small_cnn_create(1, width, train.classes, (uint64_t)seed);
        model.params = model.cnn.params;
    } else {
        train = toy_spirals(samples, 3, 0.02, &data_rng);
        test = toy_spirals(samples / 4, 3, 0.02, &data_rng);
        model.mlp = mlp_create(2, width * 4, 2, train.classes, (uint64_t)seed);
        model.params = model.mlp.params;
    }
    ParamStore *params = model.params;
    Optimizer *optimizer = strcmp(optimizer_name, "sgd") == 0
                               ? optimizer_new_sgd(params->numel, lr, momentum, 0, momentum > 0, weight_decay)
                               : optimizer_new_adam(params->numel, lr, 0.9, 0.999, 1e-8, weight_decay, strcmp(optimizer_name, "adamw") == 0);
    if (!optimizer) {
        fprintf(stderr, "error: tailor demo: invalid optimizer settings (negative lr, momentum or weight decay?)\n");
        return 2;
    }
    optimizer_add_group(optimizer, params->group_start[PARAM_GROUP_NO_DECAY], params->group_count[PARAM_GROUP_NO_DECAY], 1.0, 0.0);
    if (run_device.kind == DEVICE_CUDA) {  // data stays on the host; batches are copied over
        params_to_device(params, run_device);
        optimizer_move_to_device(optimizer);
    }

    // The settings that fix the data, the model and its parameter layout; a resume must match them.
    TrainState state = {0};
    snprintf(state.user_json, sizeof state.user_json,
             "{\"command\":\"demo\",\"task\":\"%s\",\"seed\":%lld,\"samples\":%lld,\"batch-size\":%lld,\"width\":%lld,\"optimizer\":\"%s\","
             "\"momentum\":%s}",
             task_name, (long long)seed, (long long)samples, (long long)batch_size, (long long)width, optimizer_name,
             momentum > 0 ? "true" : "false");
    if (resume_dir) {
        char saved[sizeof state.user_json];
        if (checkpoint_read_user_json(resume_dir, saved, sizeof saved, error, sizeof error) != 0) {
            fprintf(stderr, "error: tailor demo: --resume: %s\n", error);
            return 1;
        }
        if (check_resume_settings("demo", saved, state.user_json, resume_dir) != 0) return 2;
        if (checkpoint_load(resume_dir, params, optimizer, &state, error, sizeof error) != 0) {
            fprintf(stderr, "error: tailor demo: --resume: %s\n", error);
            return 1;
        }
        fprintf(stderr, "tailor demo: resumed from %s at step %lld (bitwise continuation needs the same --threads)\n",
                resume_dir, (long long)state.step);
        if (state.step >= steps) {
            fprintf(stderr, "error: tailor demo: the checkpoint is already at step %lld; ask for more with --steps (now %lld)\n",
                    (long long)state.step, (long long)steps);
            return 2;
        }
    }

    char path[4096];
    snprintf(path, sizeof path, "%s/log.jsonl", out_dir);
    JsonlLog *log = jsonl_open(path, error, sizeof error);
    if (!log) {
        fprintf(stderr, "error: tailor demo: %s\n", error);
        return 1;
    }
    jsonl_write(log, "\"event\":\"start\",\"task\":\"%s\",\"steps\":%lld,\"batch_size\":%lld,\"parameters\":%lld,\"threads\":%d,\"resumed_at\":%lld",
                task_name, (long long)steps, (long long)batch_size, (long long)params->numel, omp_get_max_threads(), (long long)state.step);
    printf("tailor demo: task %s, %lld parameters, %lld training / %lld held-out samples, %s lr %g, %d threads\n", task_name,
           (long long)params->numel, (long long)samples, (long long)(samples / 4), optimizer_name, lr, omp_get_max_threads());

    int64_t *order = malloc((size_t)samples * sizeof(int64_t));
    int64_t steps_per_epoch = samples / batch_size;
    int64_t order_epoch = -1;
    Progress progress;
    progress_begin(&progress, "demo", steps);
    double smoothed_loss = NAN, test_loss = NAN, test_accuracy = NAN;
    char status[128] = "", checkpoint_dir[4096];
    snprintf(checkpoint_dir, sizeof checkpoint_dir, "%s/checkpoint", out_dir);
    double start_time = progress_now();
    int64_t first_step = state.step;
    while (state.step < steps) {
        if (order_epoch != state.epoch) {  // the epoch's order is a pure function of (seed, epoch)
            Rng epoch_rng = rng_make((uint64_t)seed, 1000 + (uint64_t)state.epoch);
            rng_permutation(&epoch_rng, order, samples);
            order_epoch = state.epoch;
        }
        TensorScope scope = tensor_scope_begin();
        Tensor *x, *y;
        toy_task_batch(&train, order, state.epoch_position, batch_size, &x, &y);
        x = op_to_device(x, run_device);
        params_zero_grad(params);
        Tensor *loss = op_cross_entropy(demo_forward(&model, x, true), y, cross_entropy_defaults());
        double loss_value = tensor_item(loss);
        if (!isfinite(loss_value)) {
            fprintf(stderr, "\nerror: tailor demo: the loss became %g at step %lld (learning rate %g too high?)\n", loss_value,
                    (long long)state.step, optimizer->lr);
            jsonl_write(log, "\"event\":\"error\",\"step\":%lld,\"message\":\"non-finite loss\"", (long long)state.step);
            return 1;
        }
        tensor_backward(loss, NULL);
        optimizer->lr = schedule_lr(&schedule, lr, state.step);
        optimizer_step(optimizer, params_values(params), params_grads(params));
        tensor_scope_end(scope);

        state.step++;
        state.epoch_position += batch_size;
        if (state.epoch_position / batch_size >= steps_per_epoch) {
            state.epoch++;
            state.epoch_position = 0;
        }
        smoothed_loss = isnan(smoothed_loss) ? loss_value : 0.95 * smoothed_loss + 0.05 * loss_value;
        jsonl_write(log, "\"event\":\"step\",\"step\":%lld,\"loss\":%.6g,\"lr\":%.6g", (long long)state.step, loss_value, optimizer->lr);
        if ((eval_every && state.step % eval_every == 0) || state.step == steps) {
            evaluate(&model, &test, &test_loss, &test_accuracy);
            jsonl_write(log, "\"event\":\"eval\",\"step\":%lld,\"test_loss\":%.6g,\"test_accuracy\":%.6g", (long long)state.step,
                        test_loss, test_accuracy);
        }
        if ((checkpoint_every && state.step % checkpoint_every == 0) || state.step == steps) {
            if (checkpoint_save(checkpoint_dir, params, optimizer, &state, error, sizeof error) != 0) {
                fprintf(stderr, "\nerror: tailor demo: %s\n", error);
                return 1;
            }
        }
        snprintf(status, sizeof status, "loss %.4f test acc %s", smoothed_loss, isnan(test_accuracy) ? "-" : "");
        if (!isnan(test_accuracy)) snprintf(status + strlen(status), sizeof status - strlen(status), "%.1f%%", 100 * test_accuracy);
        progress_update(&progress, state.step, status);
    }
    progress_end(&progress, status);
    double elapsed = progress_now() - start_time;
    double images_per_second = elapsed > 0 ? (double)(state.step - first_step) * (double)batch_size / elapsed : 0;
    printf("step %lld: held-out accuracy %.2f%% (chance %.0f%%), held-out loss %.4f, %.0f samples/s\n", (long long)state.step,
           100 * test_accuracy, 100.0 / (double)train.classes, test_loss, images_per_second);
    printf("weights: %s/model.safetensors, log: %s/log.jsonl\n", checkpoint_dir, out_dir);
    jsonl_write(log, "\"event\":\"end\",\"step\":%lld,\"test_accuracy\":%.6g,\"samples_per_second\":%.1f", (long long)state.step,
                test_accuracy, images_per_second);
    jsonl_close(log);
    free(order);
    optimizer_free(optimizer);
    if (model.is_cnn) small_cnn_free(&model.cnn);
    else mlp_free(&model.mlp);
    toy_task_free(&train);
    toy_task_free(&test);
    return 0;
}
