// `tailor uda` end to end on two small generated ImageFolders (16x16 stripes from two seeds, the
// second's images with their colours inverted — the "target domain"): DANN and source-only runs log
// every loss term, the discriminator's accuracy and the reversal coefficient per step and the target
// accuracy per evaluation; --resume continues to the same classifier and discriminator bit for bit;
// `tailor eval --run` reads the run; user errors end in one line.
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/image.h"
#include "engine/fs.h"
#include "tests/check.h"
#include "tests/image_fixtures.h"
#include "tests/run_command.h"

TEST_MAIN_COUNTERS;

static char build_dir[256] = "build";
static char work_dir[256];

static int run(const char *command, char *captured, size_t size) { return run_command(work_dir, command, captured, size); }

static const char FLAGS[] =
    "uda --model wrn-10-1 --bn-momentum 0.1 --image-size 16 --batch-size 8 --discriminator-hidden 32 --bottleneck 16 "
    "--workers 1 --threads 2 --device cpu";

// The target: stripes of another seed with inverted colours (a shift the source never shows).
static void write_inverted_stripes(const char *root) {
    write_stripes(root, 16, 9);
    char error[512];
    Dataset *d = dataset_image_folder(root, error, sizeof error);
    CHECK_MSG(d, "%s", error);
    for (int64_t i = 0; d && i < d->count; i++) {
        Image image;
        if (image_load(d->samples[i].path, 3, &image, error, sizeof error) != 0) continue;
        for (int j = 0; j < image.width * image.height * 3; j++) image.pixels[j] = (uint8_t)(255 - image.pixels[j]);
        image_save_png(d->samples[i].path, &image, error, sizeof error);
        image_free(&image);
    }
    dataset_free(d);
}

TEST(dann_logs_every_term) {
    char command[2048], output[8192];
    snprintf(command, sizeof command,
             "%s/tailor %s --method dann --source %s/source --target %s/target --target-test %s/target --steps 12 "
             "--eval-every 6 --out %s/dann",
             build_dir, FLAGS, work_dir, work_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    char path[600], error[256];
    snprintf(path, sizeof path, "%s/dann/log.jsonl", work_dir);
    char *log = fs_read_text(path, error, sizeof error);
    CHECK_MSG(log, "%s", error);
    if (!log) return;
    int steps = 0, evals = 0;
    for (const char *at = strstr(log, "\"event\":\"step\""); at; at = strstr(at + 1, "\"event\":\"step\"")) steps++;
    for (const char *at = strstr(log, "\"event\":\"eval\""); at; at = strstr(at + 1, "\"event\":\"eval\"")) evals++;
    CHECK_MSG(steps == 12 && evals == 2, "%d steps, %d evaluations logged", steps, evals);
    const char *step1 = strstr(log, "\"step\":1,");
    CHECK_MSG(step1 && strstr(step1, "\"classification\":") && strstr(step1, "\"transfer\":") &&
                  strstr(step1, "\"domain_accuracy\":") && strstr(step1, "\"coefficient\":0,"),
              "%.300s", step1 ? step1 : log);  // the paper's schedule starts at 0
    CHECK(strstr(log, "\"target_top1\":"));
    free(log);
    snprintf(command, sizeof command, "%s/tailor eval --run %s/dann --data %s/target --device cpu", build_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
}

TEST(resume_continues_bit_for_bit) {
    char command[2048], output[8192];
    const char *common = "--method dann --steps 10 --eval-every 4 --target-test none";
    snprintf(command, sizeof command, "%s/tailor %s %s --source %s/source --target %s/target --out %s/part --stop-at-step 4",
             build_dir, FLAGS, common, work_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command, "%s/tailor %s %s --source %s/source --target %s/target --out %s/part --resume %s/part/checkpoint",
             build_dir, FLAGS, common, work_dir, work_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command, "%s/tailor %s %s --source %s/source --target %s/target --out %s/whole", build_dir, FLAGS,
             common, work_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    const char *files[] = {"final.safetensors", "checkpoint/modules/model.safetensors", "checkpoint/modules/train_state.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/part/%s", work_dir, files[i]);
        snprintf(b, sizeof b, "%s/whole/%s", work_dir, files[i]);
        CHECK_MSG(files_identical(a, b), "%s differs after 4 + resume 6 vs 10 steps", files[i]);
    }
}

TEST(source_only_has_no_transfer_term) {
    char command[2048], output[8192];
    snprintf(command, sizeof command,
             "%s/tailor %s --method source-only --source %s/source --target %s/target --target-test none --steps 3 --out %s/so",
             build_dir, FLAGS, work_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    char path[600], error[256];
    snprintf(path, sizeof path, "%s/so/log.jsonl", work_dir);
    char *log = fs_read_text(path, error, sizeof error);
    CHECK_MSG(log && strstr(log, "\"transfer\":0,") && strstr(log, "\"domain_accuracy\":null"), "%s", log ? log : error);
    free(log);
    snprintf(path, sizeof path, "%s/so/checkpoint/modules", work_dir);
    CHECK(!fs_is_directory(path));
}

// CDAN, both maps: its discriminator (and the randomized map's matrices) go into the checkpoint.
TEST(cdan_runs_with_both_maps) {
    const char *variants[2] = {"", "--randomized --randomized-dim 24 --no-entropy-conditioning"};
    for (int v = 0; v < 2; v++) {
        char command[2048], output[8192], path[600], error[256];
        snprintf(command, sizeof command,
                 "%s/tailor %s --method cdan %s --source %s/source --target %s/target --target-test none --steps 3 --out %s/cdan%d",
                 build_dir, FLAGS, variants[v], work_dir, work_dir, work_dir, v);
        CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
        snprintf(path, sizeof path, "%s/cdan%d/log.jsonl", work_dir, v);
        char *log = fs_read_text(path, error, sizeof error);
        CHECK_MSG(log && strstr(log, "\"step\":3,") && !strstr(log, "\"domain_accuracy\":null"), "%s", log ? log : error);
        free(log);
        snprintf(path, sizeof path, "%s/cdan%d/settings.json", work_dir, v);
        char *settings = fs_read_text(path, error, sizeof error);
        CHECK_MSG(settings && strstr(settings, v ? "\"randomized\":true" : "\"entropy-conditioning\":true"), "%s",
                  settings ? settings : error);
        free(settings);
    }
}

TEST(user_errors_are_one_line) {
    struct {
        const char *args;
        const char *expected;
    } cases[] = {
        {"uda --source a", "error: tailor uda: --source and --target are required"},
        {"uda --method mcd --source a --target b", "error: tailor uda: --method mcd: expected one of source-only, dann, cdan"},
        {"uda --source /nonexistent --target /nonexistent", "--source /nonexistent"},
        {"uda --source a --target b --grl linear", "--grl \"linear\": expected paper, warm-start"},
        {"uda --source a --target b --batch-size 1", "--batch-size in 2..65536"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char command[1024], output[8192];
        snprintf(command, sizeof command, "%s/tailor %s --device cpu --out %s/errors", build_dir, cases[i].args, work_dir);
        int status = run(command, output, sizeof output);
        size_t lines = 0;
        for (const char *c = output; *c; c++) lines += *c == '\n';
        CHECK_MSG(status == 2 && strstr(output, cases[i].expected) && lines == 1, "tailor %s: exit %d, stderr:\n%s",
                  cases[i].args, status, output);
    }
}

int main(void) {
    const char *build = getenv("BUILD");
    if (build && *build) snprintf(build_dir, sizeof build_dir, "%s", build);
    snprintf(work_dir, sizeof work_dir, "%s/tailor_uda_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(work_dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/source", work_dir);
    write_stripes(path, 16, 8);
    snprintf(path, sizeof path, "%s/target", work_dir);
    write_inverted_stripes(path);
    RUN_TEST(dann_logs_every_term);
    RUN_TEST(resume_continues_bit_for_bit);
    RUN_TEST(source_only_has_no_transfer_term);
    RUN_TEST(cdan_runs_with_both_maps);
    RUN_TEST(user_errors_are_one_line);
    fs_remove_tree(work_dir);
    return test_summary();
}
