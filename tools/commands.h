// The tailor subcommands; each parses its own flags and returns the process exit status.
#pragma once
#include <stdint.h>

#include "engine/tensor.h"

int command_demo(int argc, char **argv);
int command_data(int argc, char **argv);
int command_train(int argc, char **argv);
int command_eval(int argc, char **argv);
int command_diffusion_train(int argc, char **argv);
int command_generate(int argc, char **argv);
int command_prompts(int argc, char **argv);
int command_uda(int argc, char **argv);

// --device auto|cpu|cuda[:N] and --threads: the device to train on; exits with one line when the
// device cannot be used.
Device apply_device_and_threads(const char *command, const char *device, int64_t threads);
