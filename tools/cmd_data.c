// `tailor data build`: writes the built-in multi-domain benchmark (data/benchmark.h, docs/DATA.md)
// from real data in Debian packages.
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "data/benchmark.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/progress.h"

static void data_usage(FILE *out) {
    fprintf(out,
            "usage: tailor data <subcommand> [flags]\n\n"
            "subcommands:\n"
            "  build    write the multi-domain benchmark (hand, print, lowres, photo, fashion, fashion-photo, world)\n\n"
            "`tailor data build --help` lists its flags; docs/DATA.md describes the domains.\n");
}

// Progress bars on stderr, one per domain.
static void show_progress(void *user, int domain, int64_t done, int64_t total) {
    Progress *progress = user;
    static char label[64];
    if (done == 0) {
        snprintf(label, sizeof label, "data %s", benchmark_domain_info(domain)->name);
        progress_begin(progress, label, total);
    } else if (done >= total) {
        progress_end(progress, "done");
    } else {
        progress_update(progress, done, "");
    }
}

static int command_data_build(int argc, char **argv) {
    const char *out_dir = "data/benchmark", *domains = "all", *sources_dir = NULL,
               *opencv_dir = "/usr/share/doc/opencv-doc/examples/data", *fashion_dir = "/usr/share/datasets/fashion-mnist",
               *fonts = "/usr/share/fonts:/usr/share/texmf/fonts/opentype";
    int64_t seed = 0, threads = 0;
    bool reduced = false, force = false;
    Flag flags[] = {
        {"out", FLAG_STRING, &out_dir, "output directory (built in <out>.partial, renamed when complete)", NULL},
        {"seed", FLAG_INT, &seed, "seed of every split and rendering draw", NULL},
        {"domains", FLAG_STRING, &domains, "comma list of hand, print, lowres, photo, fashion, fashion-photo, world (or all)", NULL},
        {"reduced", FLAG_BOOL, &reduced, "small version for CI: 20 train + 10 test per class, world 10 per category", NULL},
        {"force", FLAG_BOOL, &force, "replace an existing benchmark at --out", NULL},
        {"sources", FLAG_STRING, &sources_dir, "cache holding digits.csv.gz (none: $TAILOR_DATA_SOURCES, else ~/.cache/tailor/sources)", NULL},
        {"opencv-data", FLAG_STRING, &opencv_dir, "OpenCV's samples/data: digits.png and the photos (opencv-doc)", NULL},
        {"fashion-dir", FLAG_STRING, &fashion_dir, "Fashion-MNIST's four gzip IDX files (dataset-fashion-mnist)", NULL},
        {"fonts", FLAG_STRING, &fonts, "':'-separated font directories, searched recursively", NULL},
        {"threads", FLAG_INT, &threads, "CPU threads (0: all cores)", NULL},
    };
    args_parse("data build",
               "Write the multi-domain benchmark (32x32 RGB PNG ImageFolders, image lists, captions, manifest) from Debian packages;\n"
               "`sh scripts/get_data_sources.sh` installs them.",
               flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, 3);
    if (threads < 0) {
        fprintf(stderr, "error: tailor data build: --threads must be >= 0 (0 = all cores)\n");
        return 2;
    }
    if (seed < 0) {
        fprintf(stderr, "error: tailor data build: --seed must be >= 0\n");
        return 2;
    }
    if (threads > 0) omp_set_num_threads((int)threads);
    BenchmarkOptions options;
    benchmark_options_default(&options);
    options.out_dir = out_dir;
    options.seed = (uint64_t)seed;
    options.domains = domains;
    options.reduced = reduced;
    options.force = force;
    options.sources_dir = sources_dir;
    options.opencv_data_dir = opencv_dir;
    options.fashion_dir = fashion_dir;
    options.fonts_dirs = fonts;
    Progress progress;
    options.progress = show_progress;
    options.progress_user = &progress;
    options.summary = stdout;
    char error[2048];
    if (benchmark_check_sources(&options, error, sizeof error) != 0) {  // before any output
        fprintf(stderr, "error: tailor data build: %s\n", error);
        return strncmp(error, "--", 2) == 0 ? 2 : 1;
    }
    BenchmarkReport report;
    if (benchmark_build(&options, &report, error, sizeof error) != 0) {
        fprintf(stderr, "error: tailor data build: %s\n", error);
        return strncmp(error, "--", 2) == 0 ? 2 : 1;
    }
    double seconds = 0;
    for (int d = 0; d < BENCHMARK_DOMAIN_COUNT; d++) seconds += report.seconds[d];
    printf("wrote %s (seed %lld%s, %d threads, %.1f s); docs/DATA.md describes it\n", out_dir, (long long)seed,
           reduced ? ", reduced" : "", omp_get_max_threads(), seconds);
    return 0;
}

int command_data(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "error: tailor data: missing subcommand: build (see tailor data --help)\n");
        return 2;
    }
    if (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "help") == 0) {
        data_usage(stdout);
        return 0;
    }
    if (strcmp(argv[2], "build") == 0) return command_data_build(argc, argv);
    fprintf(stderr, "error: tailor data: unknown subcommand '%s' (see tailor data --help)\n", argv[2]);
    return 2;
}
