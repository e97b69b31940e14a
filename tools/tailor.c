// tailor: the command-line front end. `tailor <command> --help` describes each command.
#include <stdio.h>
#include <string.h>

#include "tools/commands.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: tailor <command> [flags]\n\n"
            "commands:\n"
            "  demo     train a small network on a generated task and show it learning\n"
            "  data     build the multi-domain benchmark from Debian packages (tailor data build)\n"
            "  train    train or fine-tune an image classifier, validating after each epoch\n"
            "  eval     evaluate a classifier: accuracy, per-class accuracy, confusion matrix\n"
            "  diffusion-train  train a diffusion UNet (text-, class- or unconditional; pixel or latent)\n"
            "  generate make labelled images from prompts or class names (built-in generator, SD 1.x, DiT)\n"
            "  prompts  build N distinct prompts per class from a seeded grammar (for generate --prompts)\n"
            "  uda      adapt a classifier from a labelled source to an unlabelled target (source-only, DANN)\n"
            "  help     this text\n\n"
            "`tailor <command> --help` lists a command's flags.\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // keep stdout lines in order with progress on stderr
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "demo") == 0) return command_demo(argc, argv);
    if (strcmp(argv[1], "data") == 0) return command_data(argc, argv);
    if (strcmp(argv[1], "train") == 0) return command_train(argc, argv);
    if (strcmp(argv[1], "eval") == 0) return command_eval(argc, argv);
    if (strcmp(argv[1], "diffusion-train") == 0) return command_diffusion_train(argc, argv);
    if (strcmp(argv[1], "generate") == 0) return command_generate(argc, argv);
    if (strcmp(argv[1], "prompts") == 0) return command_prompts(argc, argv);
    if (strcmp(argv[1], "uda") == 0) return command_uda(argc, argv);
    fprintf(stderr, "error: tailor: unknown command '%s' (see tailor help)\n", argv[1]);
    return 2;
}
