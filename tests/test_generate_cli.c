// `tailor diffusion-train` and `tailor generate` end to end on a small generated ImageFolder (16x16
// stripes, two classes): a text-conditional run writes its log, sample grids, checkpoint and a
// generator folder; --resume continues to the same weights and EMA bit for bit; a class-conditional
// run's generator makes images by class name; generate writes the ImageFolder, manifest and grid,
// the same bytes for the same seed; the built-in generator loads with no --model; user errors end
// in one line.
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/image.h"
#include "engine/fs.h"
#include "engine/safetensors.h"
#include "tests/check.h"
#include "tests/image_fixtures.h"
#include "tests/run_command.h"

TEST_MAIN_COUNTERS;

static char build_dir[256] = "build";
static char work_dir[256];

static int run(const char *command, char *captured, size_t size) { return run_command(work_dir, command, captured, size); }

static void read_stdout(char *out, size_t size) { read_command_stdout(work_dir, out, size); }

static bool exists(const char *fmt, const char *a) {
    char path[1024];
    struct stat info;
    snprintf(path, sizeof path, fmt, work_dir, a);
    return stat(path, &info) == 0 && info.st_size > 0;
}

// The tiny UNet on 16x16 stripes, captions from the class names, 2 threads at most.
static const char TRAIN_FLAGS[] =
    "diffusion-train --unet tiny --image-size 16 --batch-size 8 --text-width 16 --text-heads 2 --text-layers 1 "
    "--context-length 8 --sample-steps 3 --sample-columns 2 --workers 1 --threads 2 --device cpu";

TEST(text_run_writes_log_samples_checkpoint_and_generator) {
    char command[2048], output[8192], text[8192];
    snprintf(command, sizeof command,
             "%s/tailor %s --data %s/stripes --caption-template \"{class} stripes\" --steps 6 --sample-every 3 "
             "--checkpoint-every 3 --out %s/text",
             build_dir, TRAIN_FLAGS, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    read_stdout(text, sizeof text);
    CHECK_MSG(strstr(text, "step 6: loss") && strstr(text, "generator (EMA weights)"), "%s", text);
    const char *files[] = {"log.jsonl", "samples/step_000003.png", "samples/step_000006.png", "checkpoint/model.safetensors",
                           "checkpoint/ema/model.safetensors", "checkpoint/train_state.safetensors", "generator/model_index.json",
                           "generator/unet/config.json", "generator/unet/diffusion_pytorch_model.safetensors",
                           "generator/text_encoder/model.safetensors", "generator/tokenizer/tailor-word-vocab.txt",
                           "generator/scheduler/scheduler_config.json", "generator/tailor.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) CHECK_MSG(exists("%s/text/%s", files[i]), "missing %s", files[i]);
    // The grid: 2 sample rows (one per class, from the captions) of 2 images of 16 pixels, 2-pixel gaps.
    char path[600], error[256];
    snprintf(path, sizeof path, "%s/text/samples/step_000006.png", work_dir);
    Image grid;
    if (image_load(path, 3, &grid, error, sizeof error) == 0) {
        CHECK_MSG(grid.width == 34 && grid.height == 34, "grid %dx%d", grid.width, grid.height);  // 2 rows (captions), 2 columns
        image_free(&grid);
    }
}

TEST(resume_continues_bit_for_bit) {
    char command[2048], output[8192];
    snprintf(command, sizeof command,
             "%s/tailor %s --data %s/stripes --caption-template \"{class} stripes\" --steps 6 --sample-every 0 --out %s/part "
             "--checkpoint-every 2 --stop-at-step 4",
             build_dir, TRAIN_FLAGS, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command,
             "%s/tailor %s --data %s/stripes --caption-template \"{class} stripes\" --steps 6 --sample-every 0 --out %s/part "
             "--checkpoint-every 2 --resume %s/part/checkpoint",
             build_dir, TRAIN_FLAGS, work_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command,
             "%s/tailor %s --data %s/stripes --caption-template \"{class} stripes\" --steps 6 --sample-every 0 --out %s/whole "
             "--checkpoint-every 2",
             build_dir, TRAIN_FLAGS, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    const char *files[] = {"checkpoint/model.safetensors", "checkpoint/ema/model.safetensors",
                           "generator/unet/diffusion_pytorch_model.safetensors", "generator/text_encoder/model.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/part/%s", work_dir, files[i]);
        snprintf(b, sizeof b, "%s/whole/%s", work_dir, files[i]);
        CHECK_MSG(files_identical(a, b), "%s differs after 4 + resume 2 vs 6 steps", files[i]);
    }
    // A resume with other settings is refused, naming the flag.
    snprintf(command, sizeof command,
             "%s/tailor %s --data %s/stripes --caption-template \"{class} stripes\" --steps 6 --lr 0.01 --out %s/part "
             "--resume %s/part/checkpoint",
             build_dir, TRAIN_FLAGS, work_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 2 && strstr(output, "--lr"), "%s", output);
}

TEST(generate_writes_images_manifest_and_grid) {
    char command[2048], output[8192], text[8192];
    snprintf(command, sizeof command,
             "%s/tailor generate --model %s/text/generator --prompt \"vertical stripes\" --images-per-prompt 3 --batch-size 2 "
             "--steps 3 --threads 2 --out %s/gen1",
             build_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    read_stdout(text, sizeof text);
    CHECK_MSG(strstr(text, "wrote 3 images of 16x16"), "%s", text);
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "vertical-stripes/%05d.png", i);
        CHECK_MSG(exists("%s/gen1/%s", name), "missing %s", name);
    }
    CHECK(exists("%s/gen1/%s", "grid.png"));
    char path[600], manifest[2048] = "";
    snprintf(path, sizeof path, "%s/gen1/manifest.tsv", work_dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t n = fread(manifest, 1, sizeof manifest - 1, f);
        manifest[n] = 0;
        fclose(f);
    }
    CHECK_MSG(strstr(manifest, "path\tlabel\tseed\tprompt\n") &&
                  strstr(manifest, "vertical-stripes/00002.png\tvertical-stripes\t2\tvertical stripes\n"),
              "%s", manifest);
    // The same request with another batch size: the same seeds, so the same images, up to the GEMMs'
    // rounding; run twice with the same batch size: the same bytes.
    snprintf(command, sizeof command,
             "%s/tailor generate --model %s/text/generator --prompt \"vertical stripes\" --images-per-prompt 3 --batch-size 2 "
             "--steps 3 --threads 2 --out %s/gen2",
             build_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/gen1/vertical-stripes/00001.png", work_dir);
    snprintf(b, sizeof b, "%s/gen2/vertical-stripes/00001.png", work_dir);
    CHECK(files_identical(a, b));
    // A prompt file and class names through a template.
    snprintf(path, sizeof path, "%s/prompts.txt", work_dir);
    f = fopen(path, "wb");
    if (f) {
        fputs("# label<TAB>prompt\nhorizontal\thorizontal stripes\nvertical stripes\n", f);
        fclose(f);
    }
    snprintf(command, sizeof command,
             "%s/tailor generate --model %s/text/generator --prompts %s --classes horizontal --template \"{class} stripes\" "
             "--images-per-prompt 1 --steps 2 --out %s/gen3",
             build_dir, work_dir, path, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    CHECK(exists("%s/gen3/%s", "horizontal/00000.png") && exists("%s/gen3/%s", "horizontal/00001.png") &&
          exists("%s/gen3/%s", "vertical-stripes/00000.png"));
}

TEST(class_conditional_run_generates_by_class_name) {
    char command[2048], output[8192];
    snprintf(command, sizeof command,
             "%s/tailor diffusion-train --condition class --unet tiny --image-size 16 --batch-size 8 --sample-steps 2 "
             "--sample-columns 2 --workers 1 --threads 2 --device cpu --data %s/stripes --steps 3 --out %s/class",
             build_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command,
             "%s/tailor generate --model %s/class/generator --classes horizontal,1 --images-per-prompt 2 --steps 2 --out %s/gen4",
             build_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    CHECK(exists("%s/gen4/%s", "horizontal/00001.png") && exists("%s/gen4/%s", "1/00001.png"));
    snprintf(command, sizeof command, "%s/tailor generate --model %s/class/generator --classes diagonal --out %s/gen5",
             build_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 2 && strstr(output, "\"diagonal\" is not a class"), "%s", output);
    snprintf(command, sizeof command, "%s/tailor generate --model %s/class/generator --prompt stripes --out %s/gen5",
             build_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 2 && strstr(output, "not text-conditional"), "%s", output);
}

// Latent space through the tiny SD VAE (tests/golden/sd_tiny: 4 latent channels, factor 4): 16x16
// images train a UNet on 4x4 latents; the generator folder carries the VAE and decodes to 16x16.
TEST(latent_run_carries_its_vae) {
    char command[2048], output[8192], text[8192];
    const char *root = getenv("TAILOR_ROOT");
    snprintf(command, sizeof command,
             "%s/tailor %s --data %s/stripes --caption-template \"{class} stripes\" --steps 2 --sample-every 0 "
             "--space latent --vae %s/tests/golden/sd_tiny/diffusers/vae --out %s/latent",
             build_dir, TRAIN_FLAGS, work_dir, root && *root ? root : ".", work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    CHECK(exists("%s/latent/%s", "generator/vae/config.json") && exists("%s/latent/%s", "generator/vae/diffusion_pytorch_model.safetensors"));
    snprintf(command, sizeof command,
             "%s/tailor generate --model %s/latent/generator --prompt \"horizontal stripes\" --images-per-prompt 1 --steps 2 "
             "--out %s/gen6",
             build_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    read_stdout(text, sizeof text);
    CHECK_MSG(strstr(text, "text-conditional UNet latent-space generator") && strstr(text, "wrote 1 images of 16x16"), "%s", text);
}

// The largest |a - b| over the tensors of two safetensors files of the same names (f32).
static double max_weight_difference(const char *path_a, const char *path_b) {
    char error[512];
    SafetensorsFile *a = NULL, *b = NULL;
    double worst = -1;
    if (safetensors_open(path_a, &a, error, sizeof error) == 0 && safetensors_open(path_b, &b, error, sizeof error) == 0) {
        worst = 0;
        for (int i = 0; i < safetensors_count(a); i++) {
            const SafetensorsEntry *ea = safetensors_entry(a, i), *eb = safetensors_find(b, ea->name);
            if (!eb || eb->nbytes != ea->nbytes || ea->dtype != DTYPE_F32) return INFINITY;
            for (size_t j = 0; j < ea->nbytes / 4; j++) {
                float x, y;
                memcpy(&x, (const char *)ea->data + 4 * j, 4);
                memcpy(&y, (const char *)eb->data + 4 * j, 4);
                worst = fmax(worst, fabs((double)x - (double)y));
            }
        }
    }
    safetensors_close(a);
    safetensors_close(b);
    return worst;
}

// The same 2 steps on the emulated CUDA device (build/tailor-emu: every kernel, cuBLAS call and
// copy of the CUDA program run on the CPU) and on the CPU.
TEST(emulated_device_trains_as_the_cpu) {
    char command[2048], output[8192];
    const char *flags = "diffusion-train --unet tiny --image-size 16 --batch-size 4 --text-width 16 --text-heads 2 "
                        "--text-layers 1 --context-length 8 --sample-steps 2 --sample-columns 1 --sample-every 0 "
                        "--workers 1 --threads 2 --steps 2 --caption-template \"{class} stripes\"";
    snprintf(command, sizeof command, "%s/tailor-emu %s --data %s/stripes --device cuda --out %s/emu", build_dir, flags,
             work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command, "%s/tailor %s --data %s/stripes --device cpu --out %s/emu_cpu", build_dir, flags,
             work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/emu/checkpoint/model.safetensors", work_dir);
    snprintf(b, sizeof b, "%s/emu_cpu/checkpoint/model.safetensors", work_dir);
    // AdamW moves every weight by up to lr (1e-4 here) per step whatever the gradient's size, so a
    // gradient near zero that rounds to the other sign moves it by 2 lr: allow 2 steps of that.
    // Measured: equal losses to 6 digits and weights within 2.7e-6; a wrong kernel moves them far more.
    double worst = max_weight_difference(a, b);
    CHECK_MSG(worst >= 0 && worst <= 4e-4, "emulated device vs CPU weights differ by %g after 2 steps", worst);
}

TEST(builtin_generator_loads_without_a_model) {
    char command[2048], output[8192], text[8192];
    snprintf(command, sizeof command,
             "%s/tailor generate --prompt \"a handwritten-style digit seven\" --images-per-prompt 2 --steps 2 --threads 2 "
             "--out %s/builtin",
             build_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    read_stdout(text, sizeof text);
    CHECK_MSG(strstr(text, "weights/world-generator: text-conditional UNet pixel-space generator") &&
                  strstr(text, "wrote 2 images of 32x32"),
              "%s", text);
}

TEST(user_errors_are_one_line) {
    struct {
        const char *args;
        int status;
        const char *expected;
    } cases[] = {
        {"generate --steps 2", 2, "error: tailor generate: give --prompt TEXT, --prompts FILE or --classes NAMES"},
        {"generate --model /nonexistent/gen --prompt x", 1, "error: tailor generate: --model: /nonexistent/gen: no such file or folder"},
        {"generate --prompt x --guidance 0.5", 2, "--guidance must be >= 1 (or 0: the model's)"},
        {"generate --prompts /nonexistent.txt", 2, "--prompts /nonexistent.txt: cannot open"},
        {"diffusion-train --space latent", 2, "error: tailor diffusion-train: --space latent needs --vae FOLDER"},
        {"diffusion-train --condition class --captions x.tsv", 2, "--captions and --caption-template are for --condition text"},
        {"diffusion-train --data /nonexistent/images", 2, "--data /nonexistent/images: not a directory"},
        {"diffusion-train --unet huge", 2, "--unet"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char command[1024], output[8192];
        snprintf(command, sizeof command, "%s/tailor %s --device cpu --out %s/errors", build_dir, cases[i].args, work_dir);
        int status = run(command, output, sizeof output);
        size_t lines = 0;
        for (const char *c = output; *c; c++) lines += *c == '\n';
        CHECK_MSG(status == cases[i].status && strstr(output, cases[i].expected) && lines == 1,
                  "tailor %s: exit %d, stderr:\n%s", cases[i].args, status, output);
    }
    // A caption file that misses an image names the file and the image.
    char path[600], command[2048], output[8192];
    snprintf(path, sizeof path, "%s/captions.tsv", work_dir);
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs("stripes/horizontal/000.png\thorizontal\thorizontal stripes\n", f);
        fclose(f);
    }
    snprintf(command, sizeof command, "%s/tailor %s --data %s/stripes --captions %s --steps 2 --out %s/errors", build_dir,
             TRAIN_FLAGS, work_dir, path, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 2 && strstr(output, "captions.tsv: no caption for"), "%s", output);
}

int main(void) {
    const char *build = getenv("BUILD");
    if (build && *build) snprintf(build_dir, sizeof build_dir, "%s", build);
    snprintf(work_dir, sizeof work_dir, "%s/tailor_generate_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(work_dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/stripes", work_dir);
    write_stripes(path, 12, 3);
    RUN_TEST(text_run_writes_log_samples_checkpoint_and_generator);
    RUN_TEST(resume_continues_bit_for_bit);
    RUN_TEST(generate_writes_images_manifest_and_grid);
    RUN_TEST(class_conditional_run_generates_by_class_name);
    RUN_TEST(latent_run_carries_its_vae);
    RUN_TEST(emulated_device_trains_as_the_cpu);
    RUN_TEST(builtin_generator_loads_without_a_model);
    RUN_TEST(user_errors_are_one_line);
    if (fs_remove_tree(work_dir) != 0) printf("could not remove %s\n", work_dir);
    return test_summary();
}
