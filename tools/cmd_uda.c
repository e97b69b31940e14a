// `tailor uda`: unsupervised domain adaptation of a classifier from a labelled source (a real
// labelled set, or the synthetic ImageFolder `tailor generate` wrote) to an unlabelled target
// (adapt/uda.h). Each step takes a source batch and a target batch of --batch-size images each.
// Target labels are never used for training; when the target has a labelled test split
// (--target-test), the target accuracy is measured every --eval-every steps and logged, for
// evaluation only. Writes <out>/settings.json (for `tailor eval --run`), <out>/log.jsonl (every
// loss term, the discriminator's accuracy and the reversal coefficient per step), <out>/checkpoint/
// (classifier, method modules and both optimizers: --resume continues bit for bit) and
// <out>/final.safetensors.
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapt/uda.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/fs.h"
#include "engine/jsonl.h"
#include "engine/optim.h"
#include "engine/schedule.h"
#include "tools/args.h"
#include "tools/classifier_setup.h"
#include "tools/commands.h"
#include "tools/data_source.h"
#include "tools/evaluate.h"
#include "tools/progress.h"
#include "tools/run_setup.h"

#define FAIL(status, ...)                                 \
    do {                                                  \
        fprintf(stderr, "error: tailor uda: " __VA_ARGS__); \
        fputc('\n', stderr);                              \
        exit(status);                                     \
    } while (0)

static Loader *open_loader(const DataSource *source, const TransformPipeline *transform, int64_t batch_size, bool train,
                           uint64_t seed, int workers, const TrainState *state, const char *name) {
    char error[4096];
    LoaderOptions o = {.dataset = source->dataset, .idx_images = data_source_idx(source), .channels = 3,
                       .views = {transform}, .n_views = 1, .batch_size = batch_size, .shuffle = train,
                       .drop_last = train, .seed = seed, .workers = workers, .bad_samples = LOADER_BAD_SAMPLE_FATAL,
                       .name = name};
    if (train && state) o.start_epoch = state->epoch, o.start_position = state->epoch_position;
    if (train && source->dataset->count < batch_size)
        FAIL(2, "%s has %lld images, fewer than one batch of --batch-size %lld", name, (long long)source->dataset->count,
             (long long)batch_size);
    Loader *loader = loader_create(&o, error, sizeof error);
    if (!loader) FAIL(1, "%s", error);
    return loader;
}

int command_uda(int argc, char **argv) {
    const char *source_spec = NULL, *target_spec = NULL, *target_test = NULL, *method_name = "dann", *image_root = NULL;
    const char *benchmark_root = "data/benchmark", *model_name = "resnet18-cifar", *pretrained = NULL, *augment = "none";
    const char *normalize = "imagenet", *schedule_text = "dann", *grl_text = "paper", *out_dir = "runs/uda", *resume_dir = NULL;
    const char *device = "auto";
    int64_t image_size = 32, bottleneck = 256, steps = 1000, batch_size = 32, seed = 0, workers = 2, threads = 0;
    int64_t eval_every = 200, stop_at_step = 0, hidden = 1024, randomized_dim = 1024;
    double lr = 0.01, backbone_lr = 0.1, momentum = 0.9, weight_decay = 1e-3, trade_off = 1.0, bn_momentum = 0;
    bool new_head = false, entropy_conditioning = true, randomized = false;
    static const char *const augments[] = {"none", "crop-flip", "randaugment", "imagenet", NULL};
    Flag flags[] = {
        {"method", FLAG_STRING, &method_name, "source-only | dann | cdan", NULL},
        {"source", FLAG_STRING, &source_spec, "labelled source: bench:DOMAIN, an ImageFolder DIR (e.g. tailor generate's --out), a list FILE.txt", NULL},
        {"target", FLAG_STRING, &target_spec, "unlabelled target, same forms (its labels are not used)", NULL},
        {"target-test", FLAG_STRING, &target_test, "labelled target images for evaluation only (default for bench:DOMAIN: its test split; \"none\": no evaluation)", NULL},
        {"image-root", FLAG_STRING, &image_root, "directory of the relative paths of image lists", NULL},
        {"benchmark-root", FLAG_STRING, &benchmark_root, "where `tailor data build` wrote the built-in benchmark", NULL},
        {"model", FLAG_STRING, &model_name, "backbone (tailor train --help lists them)", NULL},
        {"pretrained", FLAG_STRING, &pretrained, "safetensors weights to start from (torchvision/timm names)", NULL},
        {"new-head", FLAG_BOOL, &new_head, "with --pretrained: a fresh head where the file's differs", NULL},
        {"bottleneck", FLAG_INT, &bottleneck, "bottleneck width (tllib: 256; 0: none)", NULL},
        {"bn-momentum", FLAG_DOUBLE, &bn_momentum, "BatchNorm running-statistics momentum (0: the model's)", NULL},
        {"image-size", FLAG_INT, &image_size, "input side in pixels", NULL},
        {"steps", FLAG_INT, &steps, "training steps", NULL},
        {"batch-size", FLAG_INT, &batch_size, "images per domain per step", NULL},
        {"lr", FLAG_DOUBLE, &lr, "SGD learning rate of the head and the method's modules", NULL},
        {"backbone-lr", FLAG_DOUBLE, &backbone_lr, "learning-rate multiplier of the backbone (tllib: 0.1)", NULL},
        {"momentum", FLAG_DOUBLE, &momentum, "SGD (Nesterov) momentum", NULL},
        {"weight-decay", FLAG_DOUBLE, &weight_decay, "weight decay", NULL},
        {"lr-schedule", FLAG_STRING, &schedule_text, "dann: lr0 (1 + 10 p)^-0.75 (the DANN paper); inv: tllib's per-step form; or any tailor train schedule", NULL},
        {"trade-off", FLAG_DOUBLE, &trade_off, "weight of the transfer loss", NULL},
        {"grl", FLAG_STRING, &grl_text, "DANN reversal coefficient: paper | warm-start[:alpha=,lo=,hi=,max_iters=] | constant:X", NULL},
        {"discriminator-hidden", FLAG_INT, &hidden, "DANN / CDAN discriminator width", NULL},
        {"entropy-conditioning", FLAG_BOOL, &entropy_conditioning, "CDAN: weight rows by 1 + exp(-entropy) (CDAN+E)", NULL},
        {"randomized", FLAG_BOOL, &randomized, "CDAN: the randomized multilinear map instead of the full outer product", NULL},
        {"randomized-dim", FLAG_INT, &randomized_dim, "CDAN: width of the randomized map", NULL},
        {"augment", FLAG_STRING, &augment, "training augmentation preset (both domains)", augments},
        {"normalize", FLAG_STRING, &normalize, "input normalisation: imagenet | clip | half | none", NULL},
        {"eval-every", FLAG_INT, &eval_every, "steps between target evaluations (0: only at the end)", NULL},
        {"workers", FLAG_INT, &workers, "loader threads per domain", NULL},
        {"seed", FLAG_INT, &seed, "seed of initialisation, order and augmentation", NULL},
        {"out", FLAG_STRING, &out_dir, "output directory", NULL},
        {"stop-at-step", FLAG_INT, &stop_at_step, "stop (with a checkpoint) after this step (0: run to the end)", NULL},
        {"resume", FLAG_STRING, &resume_dir, "checkpoint directory to continue from (<out>/checkpoint)", NULL},
        {"device", FLAG_STRING, &device, "auto | cpu | cuda[:N]", NULL},
        {"threads", FLAG_INT, &threads, "CPU threads for the model (0: all cores)", NULL},
    };
    args_parse("uda", "Adapt a classifier from a labelled source to an unlabelled target domain.", flags,
               (int)(sizeof flags / sizeof flags[0]), argc, argv, 2);
    int method = uda_method_from_name(method_name);
    if (method < 0) FAIL(2, "--method %s: expected one of %s", method_name, uda_method_names());
    if (!source_spec || !target_spec) FAIL(2, "--source and --target are required (e.g. --source bench:print --target bench:hand)");
    if (steps < 1 || batch_size < 2 || batch_size > 65536 || image_size < 8 || image_size > 4096 || eval_every < 0 ||
        workers < 0 || workers > 64 || bottleneck < 0 || stop_at_step < 0 || hidden < 1)
        FAIL(2, "--steps must be positive, --batch-size in 2..65536, --image-size in 8..4096, --discriminator-hidden "
                "positive; --eval-every, --workers (<= 64), --bottleneck, --stop-at-step not negative");
    if (!(lr > 0) || !(backbone_lr >= 0) || !(momentum >= 0) || !(weight_decay >= 0) || !(trade_off >= 0) ||
        !(bn_momentum >= 0 && bn_momentum <= 1))
        FAIL(2, "--lr must be positive; --backbone-lr, --momentum, --weight-decay, --trade-off not negative; --bn-momentum in [0, 1]");
    char error[8192];
    UdaOptions options = uda_default_options((UdaMethod)method);
    options.trade_off = trade_off;
    options.discriminator_hidden = hidden;
    options.entropy_conditioning = entropy_conditioning;
    options.randomized = randomized;
    options.randomized_dim = randomized_dim;
    options.seed = (uint64_t)seed;
    if (grl_schedule_parse(grl_text, &options.grl, error, sizeof error) != 0) FAIL(2, "--grl %s", error);
    Device run_device = apply_device_and_threads("uda", device, threads);

    // Data: the target's test split evaluates (a bench: target's by default).
    DataSource source, target, test = {0};
    if (data_source_open("source", source_spec, "train", benchmark_root, image_root, &source, error, sizeof error) != 0)
        FAIL(2, "%s", error);
    if (data_source_open("target", target_spec, "train", benchmark_root, image_root, &target, error, sizeof error) != 0)
        FAIL(2, "%s", error);
    char default_test[1024];
    if (!target_test && !strncmp(target_spec, "bench:", 6) && !strchr(target_spec + 6, '/')) {
        snprintf(default_test, sizeof default_test, "%s/test", target_spec);
        target_test = default_test;
    }
    if (target_test && strcmp(target_test, "none") &&
        data_source_open("target-test", target_test, "test", benchmark_root, image_root, &test, error, sizeof error) != 0)
        FAIL(2, "%s", error);
    int64_t classes = source.dataset->class_count;
    DomainPair pair;
    if (domain_pair_make(source.dataset, target.dataset, test.dataset ? test.dataset : target.dataset, &pair, error,
                         sizeof error) != 0)
        FAIL(2, "--source and --target disagree: %s", error);

    char train_spec[1024], eval_spec[1024];
    if (classifier_train_transform(augment, image_size, normalize, train_spec, sizeof train_spec, error, sizeof error) != 0)
        FAIL(2, "%s", error);
    classifier_eval_transform(augment, image_size, normalize, eval_spec, sizeof eval_spec);
    TransformPipeline *train_pipeline = transform_pipeline_parse(train_spec, error, sizeof error);
    TransformPipeline *eval_pipeline = transform_pipeline_parse(eval_spec, error, sizeof error);
    if (!train_pipeline || !eval_pipeline) FAIL(2, "--normalize %s: %s", normalize, error);

    // The classifier (tllib's ImageClassifier with a bottleneck), the method's modules, and an SGD
    // for each: backbone at --backbone-lr x lr, head and modules at lr (tllib's get_parameters).
    ClassifierOptions model_options = classifier_default_options(classes);
    model_options.image_size = image_size;
    model_options.bottleneck_dim = bottleneck;
    model_options.seed = (uint64_t)seed;
    Classifier *model = classifier_create(model_name, &model_options, error, sizeof error);
    if (!model) FAIL(2, "--model: %s", error);
    if (bn_momentum > 0) classifier_set_bn_momentum(model, bn_momentum);
    if (pretrained && !resume_dir) {
        char report[4096] = "";
        if (classifier_load(model, pretrained, new_head ? CLASSIFIER_LOAD_NEW_HEAD : CLASSIFIER_LOAD_STRICT, report,
                            sizeof report, error, sizeof error) != 0)
            FAIL(1, "--pretrained: %s", error);
        printf("loaded %s%s%s\n", pretrained, *report ? ": " : "", report);
    }
    UdaTrainer *trainer = uda_trainer_create(model, &options, error, sizeof error);
    if (!trainer) FAIL(2, "%s", error);
    Optimizer *optimizer = optimizer_new_sgd(model->params->numel, lr, momentum, 0, momentum > 0, weight_decay);
    if (!optimizer || classifier_add_optimizer_groups(model, optimizer, backbone_lr, 1.0, weight_decay) != 0)
        FAIL(2, "invalid optimizer settings");
    Optimizer *module_optimizer = NULL;
    if (trainer->modules) {
        module_optimizer = optimizer_new_sgd(trainer->modules->numel, lr, momentum, 0, momentum > 0, weight_decay);
        if (!module_optimizer ||
            optimizer_add_group(module_optimizer, trainer->modules->group_start[PARAM_GROUP_NO_DECAY],
                                trainer->modules->group_count[PARAM_GROUP_NO_DECAY], 1.0, 0.0) != 0)
            FAIL(2, "invalid optimizer settings");
    }
    Schedule schedule;
    if (schedule_parse(schedule_text, steps, &schedule, error, sizeof error) != 0) FAIL(2, "--lr-schedule: %s", error);

    TrainState state = {0};
    char *settings = state.user_json;
    size_t size = sizeof state.user_json;
    snprintf(settings, size, "{\"command\":\"uda\"");
    settings_add_string(settings, size, "method", method_name);
    settings_add_string(settings, size, "model", model_name);
    settings_add_string(settings, size, "source", source_spec);
    settings_add_string(settings, size, "target", target_spec);
    settings_add_string(settings, size, "train-transform", train_spec);
    settings_add_string(settings, size, "eval-transform", eval_spec);
    settings_add_string(settings, size, "lr-schedule", schedule_text);
    settings_add_string(settings, size, "grl", grl_text);
    size_t used = strlen(settings);
    snprintf(settings + used, size - used,
             ",\"classes\":%lld,\"image-size\":%lld,\"patch-size\":0,\"bottleneck\":%lld,\"batch-size\":%lld,\"steps\":%lld,"
             "\"seed\":%lld,\"lr\":%.17g,\"backbone-lr\":%.17g,\"momentum\":%.17g,\"weight-decay\":%.17g,\"trade-off\":%.17g,"
             "\"discriminator-hidden\":%lld,\"bn-momentum\":%.17g,\"entropy-conditioning\":%s,\"randomized\":%s,"
             "\"randomized-dim\":%lld}",
             (long long)classes, (long long)image_size, (long long)bottleneck, (long long)batch_size, (long long)steps,
             (long long)seed, lr, backbone_lr, momentum, weight_decay, trade_off, (long long)hidden, bn_momentum,
             entropy_conditioning ? "true" : "false", randomized ? "true" : "false", (long long)randomized_dim);
    if (strlen(settings) + 2 >= size) FAIL(2, "the run's settings (paths) are too long");
    if (trainer->modules) train_state_add_part(&state, "modules", trainer->modules, module_optimizer);
    if (fs_make_directories(out_dir) != 0) FAIL(1, "cannot create --out directory %s: %s", out_dir, strerror(errno));
    if (resume_dir) {
        char saved[sizeof state.user_json];
        if (checkpoint_read_user_json(resume_dir, saved, sizeof saved, error, sizeof error) != 0) FAIL(1, "--resume: %s", error);
        if (check_resume_settings("uda", saved, state.user_json, resume_dir) != 0) exit(2);
        if (checkpoint_load(resume_dir, model->params, optimizer, &state, error, sizeof error) != 0) FAIL(1, "--resume: %s", error);
    }
    if (state.step >= steps) FAIL(2, "the checkpoint is already at step %lld of --steps %lld", (long long)state.step, (long long)steps);
    int64_t end_step = stop_at_step && stop_at_step < steps ? stop_at_step : steps;
    if (run_settings_write(out_dir, state.user_json, source.dataset, error, sizeof error) != 0) FAIL(1, "%s", error);
    if (run_device.kind == DEVICE_CUDA) {
        params_to_device(model->params, run_device);
        optimizer_move_to_device(optimizer);
        if (trainer->modules) params_to_device(trainer->modules, run_device), optimizer_move_to_device(module_optimizer);
    }

    // Loaders: each domain its own order (the target's seed is offset so the two differ), both
    // resumed at the same position; the target's labels are never read for training.
    Loader *source_loader = open_loader(&source, train_pipeline, batch_size, true, (uint64_t)seed, (int)workers, &state, "--source");
    // The target's position is a function of the step count: every step takes one full batch
    // (drop_last), so after n steps it is at epoch n / B, batch n % B, B its batches per epoch.
    TrainState target_state = state;
    int64_t target_batches = target.dataset->count / batch_size;
    if (target_batches > 0)
        target_state.epoch = state.step / target_batches, target_state.epoch_position = (state.step % target_batches) * batch_size;
    Loader *target_loader = open_loader(&target, train_pipeline, batch_size, true, (uint64_t)seed + 1, (int)workers,
                                        &target_state, "--target");
    Loader *test_loader = test.dataset ? open_loader(&test, eval_pipeline, 256, false, 0, (int)workers, NULL, "--target-test") : NULL;

    char path[4200], checkpoint_dir[4200];
    snprintf(path, sizeof path, "%s/log.jsonl", out_dir);
    snprintf(checkpoint_dir, sizeof checkpoint_dir, "%s/checkpoint", out_dir);
    JsonlLog *log = jsonl_open(path, error, sizeof error);
    if (!log) FAIL(1, "%s", error);
    printf("tailor uda: %s, %s, %lld classes, %lld parameters%s; source %s: %lld images; target %s: %lld images%s%s; "
           "%lld steps of %lld + %lld; %d threads\n",
           method_name, model_name, (long long)classes, (long long)params_count_elements(model->params),
           trainer->modules ? " + method modules" : "", source.description, (long long)source.dataset->count,
           target.description, (long long)target.dataset->count, test.dataset ? "; evaluated on " : "",
           test.dataset ? test.description : "", (long long)steps, (long long)batch_size, (long long)batch_size,
           omp_get_max_threads());
    jsonl_write(log, "\"event\":\"start\",\"method\":\"%s\",\"model\":\"%s\",\"steps\":%lld,\"batch_size\":%lld,\"resumed_at\":%lld",
                method_name, model_name, (long long)steps, (long long)batch_size, (long long)state.step);
    Progress progress;
    progress_begin(&progress, "uda", end_step - state.step);
    double target_top1 = NAN, smoothed_loss = NAN, smoothed_domain = NAN;
    int64_t first_step = state.step;
    char status_text[200] = "";
    int exit_status = 0;
    while (state.step < end_step) {
        const LoaderBatch *source_batch, *target_batch;
        if (loader_next(source_loader, &source_batch, error, sizeof error) != 0 ||
            loader_next(target_loader, &target_batch, error, sizeof error) != 0) {
            fprintf(stderr, "\nerror: tailor uda: %s\n", error);
            exit_status = 1;
            break;
        }
        TensorScope scope = tensor_scope_begin();
        params_zero_grad(model->params);
        if (trainer->modules) params_zero_grad(trainer->modules);
        UdaStepStats stats;
        Tensor *loss = uda_step_loss(trainer, loader_batch_images(source_batch, 0, run_device),
                                     loader_batch_labels(source_batch, run_device),
                                     loader_batch_images(target_batch, 0, run_device), state.step, steps, &stats);
        if (!isfinite(stats.loss)) {
            fprintf(stderr, "\nerror: tailor uda: the loss became %g at step %lld (learning rate %g too high?)\n", stats.loss,
                    (long long)state.step, optimizer->lr);
            jsonl_write(log, "\"event\":\"error\",\"step\":%lld,\"message\":\"non-finite loss\"", (long long)state.step);
            tensor_scope_end(scope);
            exit_status = 1;
            break;
        }
        tensor_backward(loss, NULL);
        double current_lr = schedule_lr(&schedule, lr, state.step);
        optimizer->lr = current_lr;
        optimizer_step(optimizer, params_values(model->params), params_grads(model->params));
        if (module_optimizer) {
            module_optimizer->lr = current_lr;
            optimizer_step(module_optimizer, params_values(trainer->modules), params_grads(trainer->modules));
        }
        tensor_scope_end(scope);
        state.step++;
        state.epoch = source_batch->next_epoch;
        state.epoch_position = source_batch->next_position;
        smoothed_loss = isnan(smoothed_loss) ? stats.loss : 0.95 * smoothed_loss + 0.05 * stats.loss;
        if (!isnan(stats.domain_accuracy))
            smoothed_domain = isnan(smoothed_domain) ? stats.domain_accuracy : 0.95 * smoothed_domain + 0.05 * stats.domain_accuracy;
        char domain_text[32] = "null", coefficient_text[32] = "null";
        if (!isnan(stats.domain_accuracy)) snprintf(domain_text, sizeof domain_text, "%.4g", stats.domain_accuracy);
        if (!isnan(stats.coefficient)) snprintf(coefficient_text, sizeof coefficient_text, "%.6g", stats.coefficient);
        jsonl_write(log, "\"event\":\"step\",\"step\":%lld,\"loss\":%.6g,\"classification\":%.6g,\"transfer\":%.6g,"
                         "\"source_accuracy\":%.4g,\"domain_accuracy\":%s,\"coefficient\":%s,\"lr\":%.6g",
                    (long long)state.step, stats.loss, stats.classification, stats.transfer, stats.source_accuracy,
                    domain_text, coefficient_text, current_lr);
        bool last = state.step == end_step;
        if (test_loader && ((eval_every && state.step % eval_every == 0) || state.step == steps)) {
            EvalResult result;
            if (evaluate_classifier(model, test_loader, test.dataset, run_device, "target", &result, error, sizeof error) != 0) {
                fprintf(stderr, "\nerror: tailor uda: %s\n", error);
                exit_status = 1;
                break;
            }
            target_top1 = result.top1;
            jsonl_write(log, "\"event\":\"eval\",\"step\":%lld,\"target_top1\":%.6g,\"target_mean_class\":%.6g",
                        (long long)state.step, result.top1, result.mean_class);
            if (!progress.interactive)
                printf("step %lld: target top-1 %.2f%%, mean-class %.2f%%\n", (long long)state.step, 100 * result.top1,
                       100 * result.mean_class);
            eval_result_free(&result);
        }
        if (last || (eval_every && state.step % eval_every == 0)) {
            if (checkpoint_save(checkpoint_dir, model->params, optimizer, &state, error, sizeof error) != 0) {
                fprintf(stderr, "\nerror: tailor uda: %s\n", error);
                exit_status = 1;
                break;
            }
        }
        snprintf(status_text, sizeof status_text, "loss %.4f%s", smoothed_loss, isnan(smoothed_domain) ? "" : " domain acc ");
        if (!isnan(smoothed_domain)) snprintf(status_text + strlen(status_text), sizeof status_text - strlen(status_text), "%.2f", smoothed_domain);
        if (!isnan(target_top1))
            snprintf(status_text + strlen(status_text), sizeof status_text - strlen(status_text), " target %.1f%%", 100 * target_top1);
        progress_update(&progress, state.step - first_step, status_text);
    }
    progress_end(&progress, status_text);
    if (exit_status == 0) {
        snprintf(path, sizeof path, "%s/final.safetensors", out_dir);
        if (classifier_save(model, path, error, sizeof error) != 0) FAIL(1, "%s", error);
        printf("step %lld: loss %.4f%s", (long long)state.step, smoothed_loss, isnan(target_top1) ? "" : ", target top-1 ");
        if (!isnan(target_top1)) printf("%.2f%%", 100 * target_top1);
        printf("\nweights: %s, checkpoint: %s, log: %s/log.jsonl\n", path, checkpoint_dir, out_dir);
        char top1_text[32] = "null";
        if (!isnan(target_top1)) snprintf(top1_text, sizeof top1_text, "%.6g", target_top1);
        jsonl_write(log, "\"event\":\"end\",\"step\":%lld,\"target_top1\":%s", (long long)state.step, top1_text);
    }
    jsonl_close(log);
    loader_free(source_loader);
    loader_free(target_loader);
    loader_free(test_loader);
    transform_pipeline_free(train_pipeline);
    transform_pipeline_free(eval_pipeline);
    optimizer_free(optimizer);
    optimizer_free(module_optimizer);
    uda_trainer_free(trainer);
    classifier_free(model);
    data_source_close(&source);
    data_source_close(&target);
    data_source_close(&test);
    return exit_status;
}
