// `tailor generate`: images from prompts, a prompt file or class names, through a generator
// (diffusion/pipeline.h: the built-in one, a Stable Diffusion 1.x folder or file, a DiT checkpoint
// with a VAE, or a folder `tailor diffusion-train` wrote). Writes an ImageFolder
// <out>/<label>/<NNNNN>.png, <out>/manifest.tsv (path, label, seed, prompt per image) and
// <out>/grid.png. Image k (in the order of the requests) uses seed --seed + k, so a run is
// reproducible and an image does not depend on --batch-size.
#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/image.h"
#include "data/image_grid.h"
#include "diffusion/pipeline.h"
#include "engine/fs.h"
#include "engine/ops.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/progress.h"

#define FAIL(status, ...)                                     \
    do {                                                      \
        fprintf(stderr, "error: tailor generate: " __VA_ARGS__); \
        fputc('\n', stderr);                                  \
        exit(status);                                         \
    } while (0)

// The built-in generator: weights/world-generator under $TAILOR_ROOT, else under the source tree
// the binary was built in (<tree>/build/tailor), else under the current directory.
static void builtin_generator_path(char *out, size_t size) {
    const char *root = getenv("TAILOR_ROOT");
    if (root && *root) {
        snprintf(out, size, "%s/weights/world-generator", root);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        for (int up = 0; up < 2; up++) {
            char *slash = strrchr(exe, '/');
            if (slash) *slash = 0;
        }
        snprintf(out, size, "%s/weights/world-generator", exe);
        if (access(out, F_OK) == 0) return;
    }
    snprintf(out, size, "weights/world-generator");
}

typedef struct {
    char label[128];
    int64_t slot;      // the first request with this label: images of one label are numbered together
    char *prompt;      // text models
    int64_t class_id;  // class models
} Request;

// A folder name from a label: letters, digits, '-', '_' and '.' kept, anything else '-'.
static void folder_name(const char *text, char *out, size_t size) {
    size_t n = 0;
    for (const char *c = text; *c && n + 1 < size && n < 64; c++) {
        char ch = *c;
        bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                    ch == '_' || (ch == '.' && n > 0);
        out[n++] = keep ? ch : '-';
    }
    out[n] = 0;
    if (n == 0) snprintf(out, size, "images");
}

static void add_request(Request **list, int64_t *count, const char *label, const char *prompt, int64_t class_id) {
    *list = realloc(*list, (size_t)(*count + 1) * sizeof **list);
    if (!*list) FAIL(1, "out of memory");
    Request *r = &(*list)[(*count)++];
    folder_name(label, r->label, sizeof r->label);
    r->prompt = prompt ? strdup(prompt) : NULL;
    if (prompt && !r->prompt) FAIL(1, "out of memory");
    r->class_id = class_id;
}

// The prompt of a class name under a template: "{class}" replaced by the name.
static char *fill_template(const char *template_text, const char *name) {
    size_t size = strlen(template_text) + 8 * strlen(name) + 1;
    char *out = malloc(size), *at = out;
    if (!out) FAIL(1, "out of memory");
    for (const char *t = template_text; *t;) {
        if (!strncmp(t, "{class}", 7) && (size_t)(at - out) + strlen(name) + 1 < size) at += sprintf(at, "%s", name), t += 7;
        else if ((size_t)(at - out) + 1 < size) *at++ = *t++;
        else break;
    }
    *at = 0;
    return out;
}

int command_generate(int argc, char **argv) {
    const char *model_path = NULL, *vae = NULL, *tokenizer = NULL, *prompt = NULL, *prompts_path = NULL, *class_list = NULL;
    const char *label = NULL, *template_text = "{class}", *out_dir = "runs/generate", *sampler_name = "ddim", *device = "auto";
    int64_t per_prompt = 8, seed = 0, steps = 0, batch_size = 16, image_size = 0, threads = 0, grid_columns = 8, grid_max = 64;
    double guidance = 0.0, eta = 0.0;
    static const char *const samplers[] = {"ddpm", "ddim", "euler", "euler_ancestral", NULL};
    Flag flags[] = {
        {"model", FLAG_STRING, &model_path, "generator: a diffusers/Tailor folder, an SD 1.x .safetensors or a DiT .safetensors (default: the built-in one)", NULL},
        {"vae", FLAG_STRING, &vae, "a diffusers VAE folder (needed by DiT; replaces a folder's own VAE)", NULL},
        {"tokenizer", FLAG_STRING, &tokenizer, "a CLIP tokenizer (vocab.json + merges.txt folder, or OpenAI's merges .gz) instead of the model's", NULL},
        {"prompt", FLAG_STRING, &prompt, "one prompt (text models)", NULL},
        {"label", FLAG_STRING, &label, "with --prompt: the class folder its images go to (default: from the prompt)", NULL},
        {"prompts", FLAG_STRING, &prompts_path, "a prompt file: \"label<TAB>prompt\" or just a prompt per line", NULL},
        {"classes", FLAG_STRING, &class_list, "comma-separated class names (or numbers, class models); text models prompt --template", NULL},
        {"template", FLAG_STRING, &template_text, "with --classes on a text model: the prompt of a class", NULL},
        {"images-per-prompt", FLAG_INT, &per_prompt, "images for each prompt / class", NULL},
        {"seed", FLAG_INT, &seed, "image k (in request order) uses seed + k", NULL},
        {"sampler", FLAG_STRING, &sampler_name, "sampler", samplers},
        {"steps", FLAG_INT, &steps, "sampling steps (0: the model's tailor.json recommendation, else 25)", NULL},
        {"guidance", FLAG_DOUBLE, &guidance, "classifier-free guidance scale, 1: none (0: the model's recommendation, else 3)", NULL},
        {"eta", FLAG_DOUBLE, &eta, "DDIM eta (0: deterministic)", NULL},
        {"image-size", FLAG_INT, &image_size, "image side in pixels (0: the model's)", NULL},
        {"batch-size", FLAG_INT, &batch_size, "images per sampling batch", NULL},
        {"grid-columns", FLAG_INT, &grid_columns, "columns of grid.png", NULL},
        {"grid-max", FLAG_INT, &grid_max, "at most this many images in grid.png (spread over the requests)", NULL},
        {"out", FLAG_STRING, &out_dir, "output folder (ImageFolder + manifest.tsv + grid.png)", NULL},
        {"device", FLAG_STRING, &device, "auto | cpu | cuda[:N]", NULL},
        {"threads", FLAG_INT, &threads, "CPU threads (0: all cores)", NULL},
    };
    args_parse("generate", "Generate labelled images from prompts or class names.", flags, (int)(sizeof flags / sizeof flags[0]),
               argc, argv, 2);
    if (!prompt && !prompts_path && !class_list) FAIL(2, "give --prompt TEXT, --prompts FILE or --classes NAMES (see tailor generate --help)");
    if (label && !prompt) FAIL(2, "--label goes with --prompt");
    if (per_prompt < 1 || steps < 0 || batch_size < 1 || batch_size > 4096 || image_size < 0 || grid_columns < 1 || grid_max < 0)
        FAIL(2, "--images-per-prompt, --batch-size (<= 4096) and --grid-columns must be positive; --steps, --image-size and "
                "--grid-max not negative");
    if (!(guidance >= 1 || guidance == 0) || !(eta >= 0 && eta <= 1)) FAIL(2, "--guidance must be >= 1 (or 0: the model's) and --eta in [0, 1]");
    // The prompt file first: its errors do not wait for a model to load.
    Request *file_requests = NULL;
    int64_t n_file_requests = 0;
    if (prompts_path) {
        FILE *f = fopen(prompts_path, "rb");
        if (!f) FAIL(2, "--prompts %s: cannot open: %s", prompts_path, strerror(errno));
        char *line = NULL;
        size_t capacity = 0;
        ssize_t length;
        int64_t line_number = 0;
        while ((length = getline(&line, &capacity, f)) >= 0) {
            line_number++;
            while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) line[--length] = 0;
            if (length == 0 || line[0] == '#') continue;
            char *tab = strchr(line, '\t');
            if (tab && (tab == line || !tab[1] || strchr(tab + 1, '\t')))
                FAIL(2, "--prompts %s:%lld: expected \"label<TAB>prompt\" or a prompt", prompts_path, (long long)line_number);
            if (tab) *tab = 0;
            add_request(&file_requests, &n_file_requests, line, tab ? tab + 1 : line, 0);
        }
        free(line);
        fclose(f);
        if (n_file_requests == 0) FAIL(2, "--prompts %s: no prompts in the file", prompts_path);
    }
    Device run_device = apply_device_and_threads("generate", device, threads);
    char builtin[PATH_MAX + 64], error[8192];
    if (!model_path) {
        builtin_generator_path(builtin, sizeof builtin);
        model_path = builtin;
    }
    PipelineLoadOptions options = {.vae = vae, .tokenizer = tokenizer};
    Pipeline *pipeline = pipeline_load(model_path, &options, error, sizeof error);
    if (!pipeline) FAIL(1, "--model: %s", error);
    if (run_device.kind != DEVICE_CPU) pipeline_to_device(pipeline, run_device);
    bool text = pipeline->condition == PIPELINE_TEXT, by_class = pipeline->condition == PIPELINE_CLASS;

    // Requests: one per prompt or class, in the order given.
    Request *requests = NULL;
    int64_t n_requests = 0;
    if (prompt) {
        if (!text) FAIL(2, "--prompt: %s is not text-conditional; use --classes", model_path);
        add_request(&requests, &n_requests, label ? label : prompt, prompt, 0);
    }
    if (prompts_path) {
        if (!text) FAIL(2, "--prompts: %s is not text-conditional; use --classes", model_path);
        requests = realloc(requests, (size_t)(n_requests + n_file_requests) * sizeof *requests);
        if (!requests) FAIL(1, "out of memory");
        memcpy(requests + n_requests, file_requests, (size_t)n_file_requests * sizeof *requests);
        n_requests += n_file_requests;
        free(file_requests);
    }
    if (class_list) {
        if (!text && !by_class) FAIL(2, "--classes: %s is unconditional", model_path);
        char *list = strdup(class_list);
        if (!list) FAIL(1, "out of memory");
        for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
            while (*name == ' ') name++;
            if (!*name) continue;
            if (text) {
                char *filled = fill_template(template_text, name);
                add_request(&requests, &n_requests, name, filled, 0);
                free(filled);
            } else {
                int64_t id = pipeline_class_id(pipeline, name);
                if (id < 0)
                    FAIL(2, "--classes: \"%s\" is not a class of %s (a name from its tailor.json or a number 0..%lld)", name,
                         model_path, (long long)pipeline->num_classes - 1);
                add_request(&requests, &n_requests, name, NULL, id);
            }
        }
        free(list);
    }
    if (n_requests == 0) FAIL(2, "no prompts or classes to generate");
    for (int64_t r = 0; r < n_requests; r++) {
        requests[r].slot = r;
        for (int64_t q = 0; q < r; q++)
            if (!strcmp(requests[q].label, requests[r].label)) {
                requests[r].slot = requests[q].slot;
                break;
            }
    }
    int64_t total = n_requests * per_prompt;
    if (fs_make_directories(out_dir) != 0) FAIL(1, "cannot create --out %s: %s", out_dir, strerror(errno));
    for (int64_t r = 0; r < n_requests; r++) {
        char folder[8400];
        snprintf(folder, sizeof folder, "%s/%s", out_dir, requests[r].label);
        if (fs_make_directories(folder) != 0) FAIL(1, "cannot create %s: %s", folder, strerror(errno));
    }
    char path[8400];
    snprintf(path, sizeof path, "%s/manifest.tsv", out_dir);
    FILE *manifest = fopen(path, "wb");
    if (!manifest) FAIL(1, "cannot write %s: %s", path, strerror(errno));
    fprintf(manifest, "path\tlabel\tseed\tprompt\n");

    PipelineSampling sampling = pipeline_sampling_defaults();
    sampling.sampler = sampler_kind_from_name(sampler_name, "--sampler");
    if (steps == 0) steps = pipeline->sampling_steps > 0 ? pipeline->sampling_steps : sampling.steps;
    if (guidance == 0) guidance = pipeline->guidance_scale >= 1 ? pipeline->guidance_scale : sampling.guidance_scale;
    sampling.steps = (int)steps;
    sampling.guidance_scale = pipeline->condition == PIPELINE_UNCONDITIONAL ? 1.0 : guidance;
    sampling.eta = eta;
    sampling.image_size = image_size;
    printf("tailor generate: %s\n", pipeline->description);
    printf("%lld images (%lld prompts x %lld), %s %lld steps, guidance %g, seeds %lld..%lld, %d threads -> %s\n",
           (long long)total, (long long)n_requests, (long long)per_prompt, sampler_name, (long long)steps,
           sampling.guidance_scale, (long long)seed, (long long)(seed + total - 1), omp_get_max_threads(), out_dir);

    // The grid: up to grid_max images, whole rows per request where they fit.
    int64_t grid_per_request = grid_max / n_requests < per_prompt ? grid_max / n_requests : per_prompt;
    if (grid_per_request < 1 && grid_max > 0) grid_per_request = 1;
    int64_t grid_count = grid_per_request * (n_requests < grid_max ? n_requests : grid_max);
    Tensor *grid = NULL;
    int64_t size = 0;
    Progress progress;
    progress_begin(&progress, "generate", total);
    int64_t *counters = calloc((size_t)n_requests, sizeof *counters);
    uint64_t *seeds = malloc((size_t)batch_size * sizeof *seeds);
    const char **batch_prompts = malloc((size_t)batch_size * sizeof *batch_prompts);
    int64_t *batch_classes = malloc((size_t)batch_size * sizeof *batch_classes), *batch_request = malloc((size_t)batch_size * sizeof *batch_request);
    if (!counters || !seeds || !batch_prompts || !batch_classes || !batch_request) FAIL(1, "out of memory");
    double start = progress_now();
    for (int64_t first = 0; first < total; first += batch_size) {
        int64_t n = total - first < batch_size ? total - first : batch_size;
        for (int64_t i = 0; i < n; i++) {
            int64_t k = first + i, r = k / per_prompt;
            seeds[i] = (uint64_t)(seed + k);
            batch_request[i] = r;
            batch_prompts[i] = requests[r].prompt;
            batch_classes[i] = requests[r].class_id;
        }
        TensorScope scope = tensor_scope_begin();
        Tensor *condition = text ? pipeline_text_states(pipeline, batch_prompts, n, run_device)
                          : by_class ? pipeline_class_labels(pipeline, batch_classes, n, run_device) : NULL;
        Tensor *images = pipeline_generate(pipeline, condition, n, seeds, &sampling, "generate");
        int64_t H = images->shape[2], W = images->shape[3];
        if (!grid && grid_count > 0) {
            size = H;
            grid = tensor_keep(tensor_empty(DTYPE_F32, SHAPE(grid_count, 3, H, W)));
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t r = batch_request[i], index = counters[requests[r].slot]++;
            const float *pixels = tensor_f32(images) + i * 3 * H * W;
            Image image = {.width = (int)W, .height = (int)H, .channels = 3};
            image.pixels = malloc((size_t)(H * W * 3));
            if (!image.pixels) FAIL(1, "out of memory");
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++)
                    for (int c = 0; c < 3; c++)
                        image.pixels[(y * W + x) * 3 + c] = (uint8_t)(pixels[(c * H + y) * W + x] * 255.0f + 0.5f);
            char relative[256];
            snprintf(relative, sizeof relative, "%s/%05lld.png", requests[r].label, (long long)index);
            snprintf(path, sizeof path, "%s/%s", out_dir, relative);
            if (image_save_png(path, &image, error, sizeof error) != 0) FAIL(1, "%s", error);
            image_free(&image);
            fprintf(manifest, "%s\t%s\t%llu\t%s\n", relative, requests[r].label, (unsigned long long)seeds[i],
                    requests[r].prompt ? requests[r].prompt : requests[r].label);
            int64_t within = (first + i) % per_prompt;  // the image's place among its request's
            if (grid && within < grid_per_request && r * grid_per_request + within < grid_count)
                memcpy(tensor_f32(grid) + (r * grid_per_request + within) * 3 * H * W, pixels, (size_t)(3 * H * W) * sizeof(float));
        }
        tensor_scope_end(scope);
        char status[96];
        double elapsed = progress_now() - start;
        snprintf(status, sizeof status, "%.2f images/s", elapsed > 0 ? (double)(first + n) / elapsed : 0.0);
        progress_update(&progress, first + n, status);
    }
    progress_end(&progress, "");
    if (fclose(manifest) != 0) FAIL(1, "cannot write %s/manifest.tsv", out_dir);
    if (grid) {
        snprintf(path, sizeof path, "%s/grid.png", out_dir);
        // Whole rows per request when they fit; else the requests' images run on in rows of --grid-columns.
        int64_t wanted = grid_per_request > 1 ? grid_per_request : grid_columns;
        int columns = (int)(wanted < grid_columns ? wanted : grid_columns);
        if (columns > grid_count) columns = (int)grid_count;
        if (image_grid_save(path, grid, columns, error, sizeof error) != 0) FAIL(1, "%s", error);
        tensor_release(grid);
    }
    double elapsed = progress_now() - start;
    printf("wrote %lld images of %lldx%lld in %.1f s (%.2f images/s): %s/<label>/, %s/manifest.tsv%s%s%s\n", (long long)total,
           (long long)size, (long long)size, elapsed, elapsed > 0 ? (double)total / elapsed : 0.0, out_dir, out_dir,
           grid ? ", grid " : "", grid ? out_dir : "", grid ? "/grid.png" : "");
    for (int64_t r = 0; r < n_requests; r++) free(requests[r].prompt);
    free(requests);
    free(counters);
    free(seeds);
    free(batch_prompts);
    free(batch_classes);
    free(batch_request);
    pipeline_free(pipeline);
    return 0;
}
