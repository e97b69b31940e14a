// The programs end to end: the demo trains on the CPU and, through build/tailor-emu, on the
// emulated CUDA device with the same result; bad flags end in one line and exit status 2; kbench
// validates every kernel.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/safetensors.h"
#include "tests/check.h"
#include "tests/run_command.h"

TEST_MAIN_COUNTERS;

static char build_dir[256] = "build";
static char work_dir[64];

static int run(const char *command, char *captured, size_t size) {
    return run_command(work_dir, command, captured, size);
}

static const char DEMO_FLAGS[] = "demo --steps 20 --samples 256 --batch-size 32 --width 4 --eval-every 0";

TEST(demo_on_emulated_device_matches_cpu) {
    char command[1024], output[8192], error[512];
    snprintf(command, sizeof command, "%s/tailor %s --out %s/cpu", build_dir, DEMO_FLAGS, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command, "%s/tailor-emu %s --device cuda --out %s/cuda", build_dir, DEMO_FLAGS, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    char path_cpu[256], path_cuda[256];
    snprintf(path_cpu, sizeof path_cpu, "%s/cpu/checkpoint/model.safetensors", work_dir);
    snprintf(path_cuda, sizeof path_cuda, "%s/cuda/checkpoint/model.safetensors", work_dir);
    SafetensorsFile *a = NULL, *b = NULL;
    CHECK_MSG(safetensors_open(path_cpu, &a, error, sizeof error) == 0, "%s", error);
    CHECK_MSG(safetensors_open(path_cuda, &b, error, sizeof error) == 0, "%s", error);
    if (a && b) {
        CHECK(safetensors_count(a) == safetensors_count(b));
        double worst = 0;
        for (int i = 0; i < safetensors_count(a); i++) {
            const SafetensorsEntry *ea = safetensors_entry(a, i), *eb = safetensors_find(b, ea->name);
            CHECK_MSG(eb && eb->nbytes == ea->nbytes, "%s", ea->name);
            for (size_t j = 0; eb && j < ea->nbytes / sizeof(float); j++) {
                float x, y;
                memcpy(&x, (const char *)ea->data + j * sizeof(float), sizeof x);
                memcpy(&y, (const char *)eb->data + j * sizeof(float), sizeof y);
                double d = fabs((double)x - (double)y);
                if (!(d <= worst)) worst = d;
            }
        }
        // 20 SGD steps; kernels sum in other orders than the CPU loops: measured ~2e-7.
        CHECK_MSG(worst <= 1e-5, "largest weight difference between cpu and emulated cuda: %g", worst);
    }
    safetensors_close(a);
    safetensors_close(b);
}

TEST(device_flag_errors_are_one_line) {
    char command[1024], output[8192];
    snprintf(command, sizeof command, "%s/tailor demo --device cuda --out %s/x", build_dir, work_dir);
    CHECK(run(command, output, sizeof output) == 2);
    CHECK_MSG(strstr(output, "this build has no CUDA support") && strchr(output, '\n') == strrchr(output, '\n'), "%s", output);
    snprintf(command, sizeof command, "%s/tailor-emu demo --device cuda:3 --out %s/x", build_dir, work_dir);
    CHECK(run(command, output, sizeof output) == 2);
    CHECK_MSG(strstr(output, "--device cuda:3") != NULL, "%s", output);
    snprintf(command, sizeof command, "%s/tailor demo --device tpu --out %s/x", build_dir, work_dir);
    CHECK(run(command, output, sizeof output) == 2);
    CHECK_MSG(strstr(output, "expects auto, cpu or cuda[:N], got 'tpu'") != NULL, "%s", output);
    snprintf(command, sizeof command, "%s/tailor demo --stepz 3", build_dir);
    CHECK(run(command, output, sizeof output) == 2);
    CHECK_MSG(strstr(output, "unknown flag '--stepz'") != NULL, "%s", output);
}

// kbench validates every kernel against the CPU op before timing it: on the emulated device the
// validation is the point, so a failing kernel fails here too.
TEST(kbench_validates_every_kernel) {
    char command[1024], output[8192];
    snprintf(command, sizeof command, "%s/kbench --runs 1", build_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    char path[256];
    snprintf(path, sizeof path, "%s/stdout.txt", work_dir);
    FILE *f = fopen(path, "r");
    char text[16384] = "";
    size_t used = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[used] = 0;
    if (f) fclose(f);
    CHECK_MSG(strstr(text, "0 kernel(s) failed validation") != NULL, "%s", text);
    CHECK(strstr(text, "mean nothing") != NULL);  // emulated timings are labelled as such
}

int main(void) {
    const char *build = getenv("BUILD");
    if (build && *build) snprintf(build_dir, sizeof build_dir, "%s", build);
    snprintf(work_dir, sizeof work_dir, "/tmp/tailor_cli_XXXXXX");
    if (!mkdtemp(work_dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    RUN_TEST(demo_on_emulated_device_matches_cpu);
    RUN_TEST(device_flag_errors_are_one_line);
    RUN_TEST(kbench_validates_every_kernel);
    char cleanup[128];
    snprintf(cleanup, sizeof cleanup, "rm -rf %s", work_dir);
    if (system(cleanup) != 0) printf("could not remove %s\n", work_dir);
    return test_summary();
}
