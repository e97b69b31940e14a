// `tailor train`: trains or fine-tunes an image classifier (models/classifier.h) on an ImageFolder,
// an image list, an IDX pair or a domain of the built-in benchmark, with the threaded loader, and
// evaluates it after each epoch. Writes <out>/settings.json (what `tailor eval --run` needs),
// <out>/log.jsonl (a line per step and per evaluation), <out>/checkpoint/ after every epoch (for
// --resume, which continues bit for bit) and <out>/best.safetensors when validation improves.
//
// Data parallel (engine/dist.h): started by `mpirun -np N` (or srun), every rank trains on a
// disjoint contiguous shard of each global batch of --batch-size images, in the order one process
// uses; gradients are averaged over the ranks (in buckets, during backward), so the update is the
// single process's (up to f32 summation order; no learning-rate scaling) for models without
// BatchNorm. Without MPI (GPUs only) the ranks meet through --dist-init (engine/dist_rendezvous.h).
// BatchNorm normalises over each rank's shard (no synchronized BatchNorm yet), and rank 0's
// running statistics are the ones saved. Rank 0 alone prints, logs, validates, writes best weights
// and checkpoints.
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/loader.h"
#include "data/transforms.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/dist.h"
#include "engine/dist_zero.h"
#include "engine/fs.h"
#include "engine/json.h"
#include "engine/jsonl.h"
#include "engine/optim.h"
#include "engine/schedule.h"
#include "models/classifier.h"
#include "tools/args.h"
#include "tools/classifier_setup.h"
#include "tools/commands.h"
#include "tools/data_source.h"
#include "tools/evaluate.h"
#include "tools/progress.h"
#include "tools/run_setup.h"

// Exits rather than returns: the run's allocations stay reachable from this frame, so the exit is
// clean under LeakSanitizer without freeing everything on every error path.
#define FAIL(status, ...)                                  \
    do {                                                   \
        fprintf(stderr, "error: tailor train: " __VA_ARGS__); \
        fputc('\n', stderr);                               \
        exit(status);                                      \
    } while (0)

// The best validation accuracy so far lives in <out>/best.json, so a resumed run (same --out) keeps
// it; a fresh run into an old directory starts from scratch and overwrites best.* when it validates.
static double read_best(const char *out_dir) {
    char path[4096], text[256] = "";
    snprintf(path, sizeof path, "%s/best.json", out_dir);
    FILE *file = fopen(path, "r");
    if (!file) return -1;
    size_t n = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[n] = '\0';
    char error[128];
    JsonValue *root = json_parse(text, n, error, sizeof error);  // unreadable: no best yet
    double top1 = -1;
    if (!root || json_double(json_get(root, "top1"), &top1) != 0) top1 = -1;
    json_free(root);
    return top1;
}

static int write_best(const char *out_dir, const Classifier *model, int64_t epoch, int64_t step, double top1,
                      char *error, size_t error_size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/best.safetensors", out_dir);
    if (classifier_save(model, path, error, error_size) != 0) return -1;
    snprintf(path, sizeof path, "%s/best.json", out_dir);
    FILE *file = fopen(path, "w");
    if (!file) {
        snprintf(error, error_size, "%s: cannot write", path);
        return -1;
    }
    fprintf(file, "{\"epoch\":%lld,\"step\":%lld,\"top1\":%.17g}\n", (long long)epoch, (long long)step, top1);
    return fclose(file) == 0 ? 0 : -1;
}

int command_train(int argc, char **argv) {
    const char *data = NULL, *val = NULL, *image_root = NULL, *benchmark_root = "data/benchmark";
    const char *model_name = "resnet18-cifar", *pretrained = NULL, *augment = "crop-flip", *normalize = "imagenet";
    const char *train_transform = NULL, *eval_transform = NULL, *optimizer_name = "sgd", *schedule_text = "cosine";
    const char *out_dir = "runs/train", *resume_dir = NULL, *device = "auto";
    int64_t image_size = 32, patch_size = 0, bottleneck = 0, epochs = 10, steps = 0, batch_size = 64, seed = 0;
    int64_t workers = 2, threads = 0, eval_every = 1, stop_at_step = 0;
    double dist_timeout = 300, dist_bucket_mb = 25;
    const char *dist_address = NULL, *dist_run_id = NULL;
    int64_t dist_rank_flag = -1, dist_world_flag = -1, dist_local_flag = -1;
    bool dist_overlap = true;
    double lr = 0.05, momentum = 0.9, weight_decay = 5e-4, label_smoothing = 0, backbone_lr = 1.0, bn_momentum = 0;
    bool new_head = false, skip_bad_images = false, nesterov = true, zero1 = false, sync_bn = false;
    static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
    static const char *const augments[] = {"none", "crop-flip", "randaugment", "imagenet", NULL};
    Flag flags[] = {
        {"data", FLAG_STRING, &data, "training data: bench:DOMAIN, an ImageFolder DIR, a list FILE.txt or idx:IMAGES:LABELS", NULL},
        {"val", FLAG_STRING, &val, "validation data, same forms (default for bench:DOMAIN: its test split)", NULL},
        {"image-root", FLAG_STRING, &image_root, "directory of the relative paths of image lists (default: the list's)", NULL},
        {"benchmark-root", FLAG_STRING, &benchmark_root, "where `tailor data build` wrote the built-in benchmark", NULL},
        {"model", FLAG_STRING, &model_name, "resnet18|34|50|101[-cifar], wrn-28-2, wrn-28-8, vit-tiny|small|base, deit-*", NULL},
        {"pretrained", FLAG_STRING, &pretrained, "safetensors weights with torchvision/timm names to start from", NULL},
        {"new-head", FLAG_BOOL, &new_head, "with --pretrained: keep a fresh head where the file's differs (other classes)", NULL},
        {"bottleneck", FLAG_INT, &bottleneck, "tllib bottleneck width before the head (0: the model's own head)", NULL},
        {"bn-momentum", FLAG_DOUBLE, &bn_momentum, "BatchNorm running-statistics momentum (0: the model's: 0.1, WRN 0.001)", NULL},
        {"image-size", FLAG_INT, &image_size, "input side in pixels", NULL},
        {"patch-size", FLAG_INT, &patch_size, "ViT/DeiT patch size (0: 16)", NULL},
        {"epochs", FLAG_INT, &epochs, "epochs (ignored when --steps is set)", NULL},
        {"steps", FLAG_INT, &steps, "training steps (0: --epochs epochs)", NULL},
        {"batch-size", FLAG_INT, &batch_size, "images per step", NULL},
        {"optimizer", FLAG_STRING, &optimizer_name, "optimizer", optimizers},
        {"lr", FLAG_DOUBLE, &lr, "base learning rate", NULL},
        {"backbone-lr", FLAG_DOUBLE, &backbone_lr, "learning-rate multiplier of the backbone (tllib fine-tuning: 0.1)", NULL},
        {"momentum", FLAG_DOUBLE, &momentum, "SGD momentum", NULL},
        {"nesterov", FLAG_BOOL, &nesterov, "Nesterov momentum (SGD)", NULL},
        {"weight-decay", FLAG_DOUBLE, &weight_decay, "weight decay (not on biases, norms, tokens)", NULL},
        {"lr-schedule", FLAG_STRING, &schedule_text, "constant | step:every=N[,gamma=G] | multistep:milestones=A/B | cosine[:min=F] | dann | inv; may add warmup=N", NULL},
        {"label-smoothing", FLAG_DOUBLE, &label_smoothing, "label smoothing of the cross-entropy", NULL},
        {"augment", FLAG_STRING, &augment, "training augmentation preset", augments},
        {"normalize", FLAG_STRING, &normalize, "input normalisation: imagenet | clip | half | none", NULL},
        {"train-transform", FLAG_STRING, &train_transform, "transform spec replacing the --augment preset (docs/DATA.md)", NULL},
        {"eval-transform", FLAG_STRING, &eval_transform, "transform spec for validation (default: resize to --image-size)", NULL},
        {"workers", FLAG_INT, &workers, "loader threads decoding and augmenting ahead", NULL},
        {"skip-bad-images", FLAG_BOOL, &skip_bad_images, "warn and skip unreadable images instead of stopping", NULL},
        {"eval-every", FLAG_INT, &eval_every, "epochs between validations (0: only at the end)", NULL},
        {"seed", FLAG_INT, &seed, "seed of initialisation, order and augmentation", NULL},
        {"out", FLAG_STRING, &out_dir, "output directory", NULL},
        {"stop-at-step", FLAG_INT, &stop_at_step, "stop (with a checkpoint) after this step; the schedule still spans the whole run (0: run to the end)", NULL},
        {"resume", FLAG_STRING, &resume_dir, "checkpoint directory to continue from (<out>/checkpoint)", NULL},
        {"device", FLAG_STRING, &device, "auto | cpu | cuda[:N]", NULL},
        {"threads", FLAG_INT, &threads, "CPU threads for the model (0: all cores)", NULL},
        {"sync-bn", FLAG_BOOL, &sync_bn, "under mpirun: BatchNorm statistics of the global batch (synchronized)", NULL},
        {"zero1", FLAG_BOOL, &zero1, "under mpirun: shard the optimizer state over the ranks (ZeRO stage 1)", NULL},
        {"dist-timeout", FLAG_DOUBLE, &dist_timeout, "under mpirun/srun: seconds a rank waits in a collective (or the rendezvous) before stopping the run", NULL},
        {"dist-init", FLAG_STRING, &dist_address, "ranks without MPI (GPUs, NCCL): meet at tcp://HOST:PORT (rank 0 listens) or file:///SHARED/PATH", NULL},
        {"dist-run-id", FLAG_STRING, &dist_run_id, "with --dist-init: the same id on every rank of a run, new for each run (default: SLURM_JOB_ID.SLURM_STEP_ID; file:// needs one)", NULL},
        {"dist-rank", FLAG_INT, &dist_rank_flag, "this process's rank, instead of the launcher's (-1: from OpenMPI/Slurm)", NULL},
        {"dist-world-size", FLAG_INT, &dist_world_flag, "the number of ranks, with --dist-rank (-1: from OpenMPI/Slurm)", NULL},
        {"dist-local-rank", FLAG_INT, &dist_local_flag, "this process's index on its node: its GPU (-1: from the launcher, else 0)", NULL},
        {"dist-overlap", FLAG_BOOL, &dist_overlap, "all-reduce gradient buckets during backward as they complete (off: after backward)", NULL},
        {"dist-bucket-mb", FLAG_DOUBLE, &dist_bucket_mb, "size of a gradient all-reduce bucket in MiB", NULL},
    };
    args_parse("train", "Train or fine-tune an image classifier and validate it after each epoch.", flags,
               (int)(sizeof flags / sizeof flags[0]), argc, argv, 2);
    if (!data) FAIL(2, "--data is required (e.g. --data bench:print; see tailor train --help)");
    if (image_size < 8 || image_size > 4096) FAIL(2, "--image-size must be in 8..4096, got %lld", (long long)image_size);
    if (epochs <= 0 || steps < 0 || batch_size <= 0 || batch_size > 65536 || workers < 0 || workers > 64 ||
        eval_every < 0 || bottleneck < 0 || patch_size < 0 || stop_at_step < 0)
        FAIL(2, "--epochs and --batch-size (<= 65536) must be positive; --steps, --workers (<= 64), --eval-every, "
                "--bottleneck, --patch-size, --stop-at-step must not be negative");
    if (!(lr > 0) || !(backbone_lr >= 0) || !(label_smoothing >= 0 && label_smoothing < 1))
        FAIL(2, "--lr must be positive, --backbone-lr not negative, --label-smoothing in [0, 1)");
    if (!(bn_momentum >= 0 && bn_momentum <= 1)) FAIL(2, "--bn-momentum must be in (0, 1] (0: the model's default)");
    if (new_head && !pretrained) FAIL(2, "--new-head needs --pretrained");
    if (!(dist_timeout > 0)) FAIL(2, "--dist-timeout must be positive (seconds)");
    if (!(dist_bucket_mb >= 1.0 / 1024 && dist_bucket_mb <= 4096)) FAIL(2, "--dist-bucket-mb must be in [1/1024, 4096] (MiB)");
    if (dist_rank_flag < -1 || dist_world_flag < -1 || dist_local_flag < -1 || dist_rank_flag > 1 << 24 ||
        dist_world_flag > 1 << 24 || dist_local_flag > 1 << 24)
        FAIL(2, "--dist-rank, --dist-world-size and --dist-local-rank must be in 0..2^24 (-1: from the launcher)");
    size_t bucket_bytes = (size_t)(dist_bucket_mb * 1048576.0);
    NormalizeParams normalize_check;
    if (transform_normalize_preset(normalize, &normalize_check) != 0)
        FAIL(2, "--normalize %s: expected imagenet, clip, half or none", normalize);
    char error[8192];
    // Data parallel: placement from mpirun / srun (a single process without them). Errors after
    // this point abort every rank (dist's exit hook), so none waits for a rank that stopped.
    DistOptions dist_options = dist_default_options();
    dist_options.timeout_seconds = dist_timeout;
    dist_options.rank = (int)dist_rank_flag, dist_options.world_size = (int)dist_world_flag;
    dist_options.local_rank = (int)dist_local_flag;
    dist_options.init_address = dist_address;
    dist_options.run_id = dist_run_id;
    // What must agree before the first collective: flags that change which collectives run (the
    // run's settings are compared in full once the backend is up).
    char dist_config[160];
    snprintf(dist_config, sizeof dist_config, "train device=%.32s zero1=%d sync-bn=%d overlap=%d bucket=%.17g", device,
             zero1, sync_bn, dist_overlap, dist_bucket_mb);
    dist_options.config = dist_config;
    if (dist_init(&dist_options, error, sizeof error) != 0) FAIL(2, "%s", error);
    int world_size = dist_world_size(), rank = dist_rank();
    bool main_rank = dist_is_main();
    if (batch_size % world_size != 0)
        FAIL(2, "--batch-size %lld is the global batch and must divide by the %d ranks (each takes an equal shard)",
             (long long)batch_size, world_size);
    if (!main_rank && !freopen("/dev/null", "w", stdout)) FAIL(1, "rank %d: cannot silence stdout", rank);
    Device run_device = apply_device_and_threads("train", device, threads);

    // Data.
    DataSource train_source, val_source = {0};
    if (data_source_open("data", data, "train", benchmark_root, image_root, &train_source, error, sizeof error) != 0)
        FAIL(2, "%s", error);
    char default_val[1024];
    if (!val && strncmp(data, "bench:", 6) == 0 && !strchr(data + 6, '/')) {
        snprintf(default_val, sizeof default_val, "%s/test", data);
        val = default_val;
    }
    if (val && data_source_open("val", val, "test", benchmark_root, image_root, &val_source, error, sizeof error) != 0)
        FAIL(2, "%s", error);
    int64_t classes = train_source.dataset->class_count;
    if (val_source.dataset) {
        // A list or IDX validation set that lacks the last classes reports fewer (max label + 1).
        if (!val_source.dataset->class_names && val_source.dataset->class_count < classes)
            val_source.dataset->class_count = classes;
        DomainPair pair;
        if (domain_pair_make(train_source.dataset, val_source.dataset, val_source.dataset, &pair, error, sizeof error) != 0)
            FAIL(2, "--data and --val disagree: %s", error);
    }

    // Transforms.
    char train_spec[1024], eval_spec[1024];
    if (train_transform) snprintf(train_spec, sizeof train_spec, "%s", train_transform);
    else if (classifier_train_transform(augment, image_size, normalize, train_spec, sizeof train_spec, error, sizeof error) != 0)
        FAIL(2, "%s", error);
    if (eval_transform) snprintf(eval_spec, sizeof eval_spec, "%s", eval_transform);
    else classifier_eval_transform(augment, image_size, normalize, eval_spec, sizeof eval_spec);
    TransformPipeline *train_pipeline = transform_pipeline_parse(train_spec, error, sizeof error);
    if (!train_pipeline) FAIL(2, "--train-transform: %s", error);
    TransformPipeline *eval_pipeline = transform_pipeline_parse(eval_spec, error, sizeof error);
    if (!eval_pipeline) FAIL(2, "--eval-transform: %s", error);

    // Model and optimizer.
    ClassifierOptions model_options = classifier_default_options(classes);
    model_options.image_size = image_size;
    model_options.patch_size = patch_size;
    model_options.bottleneck_dim = bottleneck;
    model_options.seed = (uint64_t)seed;
    Classifier *model = classifier_create(model_name, &model_options, error, sizeof error);
    if (!model) FAIL(2, "--model: %s", error);
    if (bn_momentum > 0) classifier_set_bn_momentum(model, bn_momentum);
    if (sync_bn) classifier_set_sync_batchnorm(model, true);
    if (pretrained && !resume_dir) {
        char report[4096] = "";
        if (classifier_load(model, pretrained, new_head ? CLASSIFIER_LOAD_NEW_HEAD : CLASSIFIER_LOAD_STRICT, report,
                            sizeof report, error, sizeof error) != 0)
            FAIL(1, "--pretrained: %s%s", error,
                 !new_head && strstr(error, "shape") ? " (--new-head keeps a fresh head for other classes)" : "");
        printf("loaded %s%s%s\n", pretrained, *report ? ": " : "", report);
    }
    ParamStore *params = model->params;
    Optimizer *optimizer = strcmp(optimizer_name, "sgd") == 0
                               ? optimizer_new_sgd(params->numel, lr, momentum, 0, nesterov && momentum > 0, weight_decay)
                               : optimizer_new_adam(params->numel, lr, 0.9, 0.999, 1e-8, weight_decay,
                                                    strcmp(optimizer_name, "adamw") == 0);
    if (!optimizer) FAIL(2, "invalid optimizer settings (negative momentum or weight decay?)");
    if (classifier_add_optimizer_groups(model, optimizer, backbone_lr, 1.0, weight_decay) != 0)
        FAIL(1, "could not set up the optimizer's parameter groups");

    // Settings: what fixes the model, the data order and the parameter layout. A resume must match.
    TrainState state = {0};
    char *settings = state.user_json;
    size_t settings_size = sizeof state.user_json;
    snprintf(settings, settings_size, "{\"command\":\"train\"");
    settings_add_string(settings, settings_size, "model", model_name);
    settings_add_string(settings, settings_size, "data", data);
    settings_add_string(settings, settings_size, "train-transform", train_spec);
    settings_add_string(settings, settings_size, "eval-transform", eval_spec);
    settings_add_string(settings, settings_size, "optimizer", optimizer_name);
    settings_add_string(settings, settings_size, "lr-schedule", schedule_text);
    settings_add_string(settings, settings_size, "benchmark-root", benchmark_root);
    settings_add_string(settings, settings_size, "image-root", image_root ? image_root : "");
    size_t used = strlen(settings);
    // Everything else that changes the trajectory, so that a resume with other values is refused
    // instead of silently leaving the bit-for-bit path (--threads only changes summation order).
    snprintf(settings + used, settings_size - used,
             ",\"classes\":%lld,\"image-size\":%lld,\"patch-size\":%lld,\"bottleneck\":%lld,\"batch-size\":%lld,"
             "\"seed\":%lld,\"epochs\":%lld,\"steps\":%lld,\"lr\":%.17g,\"backbone-lr\":%.17g,\"momentum\":%.17g,"
             "\"nesterov\":%s,\"weight-decay\":%.17g,\"label-smoothing\":%.17g,\"bn-momentum\":%.17g}",
             (long long)classes, (long long)image_size, (long long)patch_size, (long long)bottleneck,
             (long long)batch_size, (long long)seed, (long long)(steps ? 0 : epochs), (long long)steps, lr, backbone_lr,
             momentum, nesterov ? "true" : "false", weight_decay, label_smoothing, bn_momentum);
    if (strlen(settings) + 32 >= settings_size)  // room for the world size added below
        FAIL(2, "the run's settings (data path, transform specs) are longer than %zu characters", settings_size - 32);
    if (main_rank && fs_make_directories(out_dir) != 0)
        FAIL(1, "cannot create --out directory %s: %s", out_dir, strerror(errno));
    if (resume_dir) {
        char saved[sizeof state.user_json];
        if (checkpoint_read_user_json(resume_dir, saved, sizeof saved, error, sizeof error) != 0)
            FAIL(1, "--resume: %s", error);
        if (check_resume_settings("train", saved, state.user_json, resume_dir) != 0) exit(2);
        if (checkpoint_load(resume_dir, params, optimizer, &state, error, sizeof error) != 0)
            FAIL(1, "--resume: %s", error);
    }
    // (A resumed checkpoint's settings replaced ours in state.user_json: drop the world size it
    // recorded, always the last member, so the ranks compare and record only this run's.)
    char *recorded = strstr(settings, ",\"world-size\":");
    if (recorded) strcpy(recorded, "}");
    // Every rank must run the same settings and model; then rank 0's weights (initial, pretrained
    // or resumed) become everyone's. The world size is recorded, but not part of what a resume or
    // the ranks must agree on: a checkpoint resumes under any world size.
    if (dist_check_same_config("run settings", state.user_json, params->numel, error, sizeof error) != 0) {
        if (*error) fprintf(stderr, "error: tailor train: %s\n", error);
        dist_finalize();
        exit(2);
    }
    dist_broadcast_params(params);
    used = strlen(settings);
    if (used > 0 && settings[used - 1] == '}')
        snprintf(settings + used - 1, settings_size - (used - 1), ",\"world-size\":%d}", world_size);
    if (main_rank && run_settings_write(out_dir, state.user_json, train_source.dataset, error, sizeof error) != 0) FAIL(1, "%s", error);
    if (run_device.kind == DEVICE_CUDA) {
        params_to_device(params, run_device);
        optimizer_move_to_device(optimizer);
    }
    // ZeRO-1 takes the optimizer state (fresh, or loaded by --resume) into this rank's shard.
    ZeroOptimizer *zero = NULL;
    if (zero1 && !(zero = zero_create(optimizer, error, sizeof error))) FAIL(1, "%s", error);

    // Loaders: training shuffles and drops the last partial batch (BatchNorm needs > 1 sample);
    // validation visits every sample once per call, in order.
    LoaderOptions train_options = {.dataset = train_source.dataset, .idx_images = data_source_idx(&train_source),
                                   .channels = 3, .views = {train_pipeline}, .n_views = 1, .batch_size = batch_size,
                                   .shuffle = true, .drop_last = true, .seed = (uint64_t)seed, .workers = (int)workers,
                                   .pinned = run_device.kind == DEVICE_CUDA,
                                   .bad_samples = skip_bad_images ? LOADER_BAD_SAMPLE_SKIP : LOADER_BAD_SAMPLE_FATAL,
                                   .start_epoch = state.epoch, .start_position = state.epoch_position, .name = "--data",
                                   .shard_rank = rank, .shard_count = world_size};
    if (train_source.dataset->count < batch_size)
        FAIL(2, "--data has %lld images, fewer than one batch of --batch-size %lld", (long long)train_source.dataset->count,
             (long long)batch_size);
    Loader *train_loader = loader_create(&train_options, error, sizeof error);
    if (!train_loader) FAIL(1, "%s", error);
    Loader *val_loader = NULL;
    if (val_source.dataset && main_rank) {  // rank 0 validates alone, on the whole set
        LoaderOptions val_options = train_options;
        val_options.shard_rank = val_options.shard_count = 0;
        val_options.dataset = val_source.dataset;
        val_options.idx_images = data_source_idx(&val_source);
        val_options.views[0] = eval_pipeline;
        val_options.shuffle = false;
        val_options.drop_last = false;
        val_options.start_epoch = val_options.start_position = 0;
        val_options.name = "--val";
        val_loader = loader_create(&val_options, error, sizeof error);
        if (!val_loader) FAIL(1, "%s", error);
    }
    int64_t steps_per_epoch = loader_batches_per_epoch(train_loader);
    int64_t total_steps = steps ? steps : epochs * steps_per_epoch;
    if (state.step >= total_steps)
        FAIL(2, "the checkpoint is already at step %lld of %lld; ask for more with --epochs or --steps",
             (long long)state.step, (long long)total_steps);
    int64_t end_step = stop_at_step && stop_at_step < total_steps ? stop_at_step : total_steps;
    if (state.step >= end_step) FAIL(2, "--stop-at-step %lld: the run is already at step %lld", (long long)stop_at_step, (long long)state.step);
    Schedule schedule;
    if (schedule_parse(schedule_text, total_steps, &schedule, error, sizeof error) != 0)
        FAIL(2, "--lr-schedule: %s", error);

    char path[4096], checkpoint_dir[4096];
    snprintf(path, sizeof path, "%s/log.jsonl", out_dir);
    snprintf(checkpoint_dir, sizeof checkpoint_dir, "%s/checkpoint", out_dir);
    JsonlLog *log = NULL;
    if (main_rank && !(log = jsonl_open(path, error, sizeof error))) FAIL(1, "%s", error);
    printf("tailor train: %s, %lld classes, %lld parameters; train %s: %lld images, %lld steps of %lld (%lld per "
           "epoch)%s%s; %d threads",
           model_name, (long long)classes, (long long)params_count_elements(params), train_source.description,
           (long long)train_source.dataset->count, (long long)total_steps, (long long)batch_size,
           (long long)steps_per_epoch, val_source.dataset ? "; val " : "",
           val_source.dataset ? val_source.description : "", omp_get_max_threads());
    if (world_size > 1) printf(" per rank; %d ranks (%s), %lld images per rank per step", world_size, dist_launcher(),
                               (long long)(batch_size / world_size));
    printf("\n");
    printf("train transform: %s\n", transform_pipeline_spec(train_pipeline));
    if (log)
        jsonl_write(log, "\"event\":\"start\",\"model\":\"%s\",\"classes\":%lld,\"steps\":%lld,\"steps_per_epoch\":%lld,"
                         "\"batch_size\":%lld,\"parameters\":%lld,\"threads\":%d,\"world_size\":%d,\"resumed_at\":%lld",
                    model_name, (long long)classes, (long long)total_steps, (long long)steps_per_epoch,
                    (long long)batch_size, (long long)params_count_elements(params), omp_get_max_threads(), world_size,
                    (long long)state.step);

    CrossEntropyOptions loss_options = cross_entropy_defaults();
    loss_options.label_smoothing = label_smoothing;
    double best = resume_dir ? read_best(out_dir) : -1, smoothed_loss = NAN, smoothed_accuracy = NAN, val_top1 = NAN;
    Progress progress;
    progress_begin(&progress, "train", end_step - state.step);
    double start_time = progress_now();
    int64_t first_step = state.step, images_seen = 0;
    char status_text[160] = "";
    int exit_status = 0;
    while (state.step < end_step) {
        dist_test_fault_point(state.step);  // tests: TAILOR_DIST_TEST_EXIT_AT_STEP / _HANG_AT_STEP
        const LoaderBatch *batch;
        if (loader_next(train_loader, &batch, error, sizeof error) != 0) {
            fprintf(stderr, "\nerror: tailor train: %s\n", error);
            exit_status = 1;
            break;
        }
        TensorScope scope = tensor_scope_begin();
        Tensor *x = loader_batch_images(batch, 0, run_device);
        Tensor *y = loader_batch_labels(batch, run_device);
        params_zero_grad(params);
        Tensor *logits = classifier_forward(model, x, true);
        Tensor *loss = op_cross_entropy(logits, y, loss_options);
        Tensor *predicted = op_to_device(op_argmax(tensor_detach(logits), 1, false), device_cpu());
        int64_t correct = 0;
        for (int64_t i = 0; i < batch->count; i++) correct += tensor_i64(predicted)[i] == batch->labels[i];
        // The global batch's loss and accuracy: shards are equal, so the mean of the ranks' means.
        double totals[2] = {tensor_item(loss), (double)correct};
        dist_all_reduce(totals, 2, DIST_F64, DIST_SUM, "loss and accuracy");
        double loss_value = world_size > 1 ? totals[0] / world_size : totals[0];
        correct = (int64_t)totals[1];
        if (!isfinite(loss_value)) {  // the same decision on every rank
            if (main_rank)
                fprintf(stderr, "\nerror: tailor train: the loss became %g at step %lld (learning rate %g too high?)\n",
                    loss_value, (long long)state.step, optimizer->lr);
            if (log) jsonl_write(log, "\"event\":\"error\",\"step\":%lld,\"message\":\"non-finite loss\"", (long long)state.step);
            tensor_scope_end(scope);
            exit_status = 1;
            break;
        }
        // Average the gradients over the ranks: each rank's loss is the mean over its shard, so the
        // average is the gradient of the global batch's mean loss. With --dist-overlap each bucket
        // is all-reduced during backward as soon as its parameters' gradients are final.
        if (!zero && dist_overlap) dist_gradients_overlap_begin(params, bucket_bytes);
        tensor_backward(loss, NULL);
        optimizer->lr = schedule_lr(&schedule, lr, state.step);
        if (zero) {  // ZeRO-1: reduce-scatter, update this rank's slice, all-gather the parameters
            zero_step(zero, optimizer, params_values(params), params_grads(params));
        } else {
            dist_average_gradients(params, bucket_bytes);
            optimizer_step(optimizer, params_values(params), params_grads(params));
        }
        tensor_scope_end(scope);

        double accuracy = (double)correct / (double)batch->global_count;
        bool epoch_done = batch->next_epoch != batch->epoch;
        state.step++;
        state.epoch = batch->next_epoch;
        state.epoch_position = batch->next_position;
        images_seen += batch->global_count;
        smoothed_loss = isnan(smoothed_loss) ? loss_value : 0.95 * smoothed_loss + 0.05 * loss_value;
        smoothed_accuracy = isnan(smoothed_accuracy) ? accuracy : 0.95 * smoothed_accuracy + 0.05 * accuracy;
        if (log)
            jsonl_write(log, "\"event\":\"step\",\"step\":%lld,\"epoch\":%lld,\"loss\":%.6g,\"accuracy\":%.4g,\"lr\":%.6g",
                    (long long)state.step, (long long)batch->epoch, loss_value, accuracy, optimizer->lr);
        bool last = state.step == total_steps, stopping = state.step == end_step;
        if (epoch_done || last || stopping) {
            int64_t epochs_done = state.epoch;
            if (val_loader && (last || (epoch_done && eval_every && epochs_done % eval_every == 0))) {
                EvalResult result;
                if (evaluate_classifier(model, val_loader, val_source.dataset, run_device, "validate", &result, error,
                                        sizeof error) != 0) {
                    fprintf(stderr, "\nerror: tailor train: %s\n", error);
                    exit_status = 1;
                    break;
                }
                val_top1 = result.top1;
                if (log)
                    jsonl_write(log, "\"event\":\"eval\",\"step\":%lld,\"epoch\":%lld,\"top1\":%.6g,\"mean_class\":%.6g,\"loss\":%.6g",
                            (long long)state.step, (long long)epochs_done, result.top1, result.mean_class, result.loss);
                if (!progress.interactive)
                    printf("epoch %lld step %lld: val top-1 %.2f%%, mean-class %.2f%%\n", (long long)epochs_done,
                           (long long)state.step, 100 * result.top1, 100 * result.mean_class);
                eval_result_free(&result);
                if (val_top1 > best) {
                    best = val_top1;
                    if (write_best(out_dir, model, epochs_done, state.step, best, error, sizeof error) != 0) {
                        fprintf(stderr, "\nerror: tailor train: %s\n", error);
                        exit_status = 1;
                        break;
                    }
                }
            }
            if (zero) zero_gather_state(zero, optimizer);  // every rank: the checkpoint holds the whole state
            if (main_rank && checkpoint_save(checkpoint_dir, params, optimizer, &state, error, sizeof error) != 0) {
                fprintf(stderr, "\nerror: tailor train: %s\n", error);
                exit_status = 1;
                break;
            }
            if (zero) zero_release_full_state(optimizer);
            // The other ranks wait here for rank 0 (so --dist-timeout must exceed a validation).
            dist_barrier("rank 0 validates and saves");
        }
        double elapsed = progress_now() - start_time;
        snprintf(status_text, sizeof status_text, "loss %.4f acc %.1f%% %.0f img/s%s", smoothed_loss,
                 100 * smoothed_accuracy, elapsed > 0 ? (double)images_seen / elapsed : 0.0, isnan(val_top1) ? "" : " val ");
        if (!isnan(val_top1))
            snprintf(status_text + strlen(status_text), sizeof status_text - strlen(status_text), "%.1f%%", 100 * val_top1);
        if (main_rank) progress_update(&progress, state.step - first_step, status_text);
    }
    if (main_rank) progress_end(&progress, status_text);
    if (exit_status == 0) {
        double elapsed = progress_now() - start_time;
        printf("step %lld: train loss %.4f, val top-1 %s", (long long)state.step, smoothed_loss, isnan(val_top1) ? "-" : "");
        if (!isnan(val_top1)) printf("%.2f%% (best %.2f%%)", 100 * val_top1, 100 * best);
        printf(", %.0f images/s\n", elapsed > 0 ? (double)images_seen / elapsed : 0.0);
        int64_t buckets = 0, overlapped = 0;
        dist_gradients_last_counts(&buckets, &overlapped);
        if (world_size > 1 && !zero)
            printf("data parallel (%s): %lld gradient buckets of %g MiB per step, %lld started before backward's last "
                   "gradient\n",
                   dist_backend(), (long long)buckets, dist_bucket_mb, (long long)overlapped);
        printf("checkpoint: %s, %slog: %s/log.jsonl\n", checkpoint_dir, best >= 0 ? "best weights: best.safetensors, " : "",
               out_dir);
        char val_text[32] = "null";  // JSON has no NaN
        if (!isnan(val_top1)) snprintf(val_text, sizeof val_text, "%.6g", val_top1);
        if (log)
            jsonl_write(log, "\"event\":\"end\",\"step\":%lld,\"val_top1\":%s,\"images_per_second\":%.1f",
                    (long long)state.step, val_text, elapsed > 0 ? (double)images_seen / elapsed : 0.0);
    }
    if (log) jsonl_close(log);
    loader_free(train_loader);
    loader_free(val_loader);
    transform_pipeline_free(train_pipeline);
    transform_pipeline_free(eval_pipeline);
    zero_free(zero);
    optimizer_free(optimizer);
    classifier_free(model);
    data_source_close(&train_source);
    data_source_close(&val_source);
    if (exit_status == 0) dist_finalize();  // otherwise dist's exit hook aborts the other ranks
    return exit_status;
}
