# Tailor build. `make` builds the library and the tailor program; `make test` builds and runs every
# test program and ends with "N passed, M failed"; `make bench` runs the benchmarks.
# SANITIZE=1 builds everything with AddressSanitizer + UndefinedBehaviorSanitizer into build-san/.

CC ?= cc
SANITIZE ?= 0
OPT ?= -O2

ifeq ($(SANITIZE),1)
BUILD := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g
else
BUILD := build
SANFLAGS :=
endif

CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Wno-unused-parameter -fopenmp -I. $(SANFLAGS) $(EXTRA_CFLAGS)
LDLIBS := -fopenmp -lm -lz -lpthread $(SANFLAGS)

# MPI (optional): data-parallel runs over several processes (engine/dist.h, engine/dist_mpi.c).
# Found through the MPI compiler wrapper (`mpicc --showme:compile` / `--showme:link`) or
# pkg-config's ompi; without it (or with `make MPI=0`) dist_mpi.c compiles as stubs, the programs
# run single-process and a launch with more than one rank stops with one line. Only dist_mpi.c
# sees MPI's headers; every program links libmpi when it is found, since the models reach
# engine/dist through synchronized BatchNorm (MPI is initialised only under a launcher).
MPI ?= 1
ifeq ($(MPI),1)
MPI_LDLIBS := $(strip $(or $(shell mpicc --showme:link 2>/dev/null),$(shell pkg-config --libs ompi 2>/dev/null)))
MPI_CFLAGS := $(strip $(or $(shell mpicc --showme:compile 2>/dev/null),$(shell pkg-config --cflags ompi 2>/dev/null)))
endif
ifneq ($(MPI_LDLIBS),)
MPI_DIST_CFLAGS := -DTAILOR_HAVE_MPI $(patsubst -I%,-isystem %,$(MPI_CFLAGS))
LDLIBS += $(MPI_LDLIBS)
endif
# dist_mpi.o is rebuilt when MPI appears or goes (the flags are kept in a stamp file).
MPI_STAMP := $(BUILD)/mpi.flags
$(shell mkdir -p $(BUILD) && (echo '$(MPI_DIST_CFLAGS)' | cmp -s - $(MPI_STAMP) || echo '$(MPI_DIST_CFLAGS)' > $(MPI_STAMP)))

ENGINE_SRC := $(wildcard engine/*.c engine/cpu/*.c models/*.c diffusion/*.c adapt/*.c data/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libtailor.a

TOOL_SRC := $(wildcard tools/*.c)
TAILOR := $(BUILD)/tailor
KBENCH := $(BUILD)/kbench

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT_SRC := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)

BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# CUDA kernels. Every kernels/*.cu (and the emulator's own test kernels, kernels/emu/tests/*.cu) is
# compiled as C with the emulator's header forced in front, into $(BUILD)/kernels-emu/; those objects
# and the emulator (kernels/emu/*.c) make $(BUILD)/libcuemu.a, which test programs link.
KERNEL_CU := $(wildcard kernels/*.cu)
EMU_TEST_CU := $(wildcard kernels/emu/tests/*.cu)
CUEMU_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard kernels/emu/*.c))
KERNEL_EMU_OBJ := $(KERNEL_CU:kernels/%.cu=$(BUILD)/kernels-emu/%.o)
EMU_TEST_KERNEL_OBJ := $(EMU_TEST_CU:kernels/%.cu=$(BUILD)/kernels-emu/%.o)
CUEMU_LIB := $(BUILD)/libcuemu.a
# Static __shared__ variables live in the section cuemu_shared; gcc gives globals there ASan redzones
# only when asked (compilers without the option go without).
ifeq ($(SANITIZE),1)
CUEMU_SECTION_FLAGS := $(shell $(CC) -fsanitize=address -fsanitize-sections=cuemu_shared -x c -c /dev/null \
    -o /dev/null 2>/dev/null && echo -fsanitize-sections=cuemu_shared)
endif
KERNEL_EMU_FLAGS := -x c -include kernels/emu/cuemu.h $(CUEMU_SECTION_FLAGS)

# The same sources compiled by nvcc for sm_80 and sm_90, warnings as errors, into $(BUILD)/kernels-cuda/:
# part of `make` when nvcc is found (on PATH or in /usr/local/cuda), skipped otherwise; `make NVCC=`
# skips it. Not repeated in the SANITIZE=1 build, whose nvcc objects would be the same.
NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
CUDA_GENCODE := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVCCFLAGS := -std=c++17 -O2 $(CUDA_GENCODE) -I. -Werror all-warnings \
    -Xcompiler -Wall,-Wextra,-Wno-unused-parameter,-Werror
CUDA_OBJ := $(KERNEL_CU:kernels/%.cu=$(BUILD)/kernels-cuda/%.o) $(EMU_TEST_CU:kernels/%.cu=$(BUILD)/kernels-cuda/%.o)
ifneq ($(NVCC),)
ifneq ($(SANITIZE),1)
CUDA_ALL := cuda-check $(BUILD)/tailor-cuda $(BUILD)/kbench-cuda
endif
endif
KERNEL_CUDA_OBJ := $(KERNEL_CU:kernels/%.cu=$(BUILD)/kernels-cuda/%.o)

.PHONY: all test bench clean cuda-check
.SECONDARY:

# `make` alone builds `all` (gpu.mk's rules come first in the file).
.DEFAULT_GOAL := all

# The device runtime (engine/gpu): which implementation each program links (GPU_*_OBJ).
include engine/gpu/gpu.mk

all: $(LIB) $(TAILOR) $(BUILD)/tailor-emu $(CUEMU_LIB) $(KBENCH) $(CUDA_ALL)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/engine/dist_mpi.o: CFLAGS += $(MPI_DIST_CFLAGS)
$(BUILD)/engine/dist_mpi.o: $(MPI_STAMP)

$(LIB): $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The CPU program: no CUDA device (engine/gpu/gpu_none.c says so clearly if one is asked for).
# The ops reference the kernel launchers, so the emulator's build of the kernels is linked to
# resolve them; with no device nothing ever launches.
$(TAILOR): $(TOOL_SRC:%.c=$(BUILD)/%.o) $(GPU_NONE_OBJ) $(LIB) $(CUEMU_LIB)
	$(CC) -o $@ $^ $(MPI_LDLIBS) $(LDLIBS)

$(BUILD)/kernels-emu/%.o: kernels/%.cu
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(KERNEL_EMU_FLAGS) -MMD -MP -c $< -o $@

$(CUEMU_LIB): $(CUEMU_OBJ) $(KERNEL_EMU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/kernels-cuda/%.o: kernels/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

cuda-check:
ifeq ($(NVCC),)
	@echo "nvcc not found: CUDA sources not compiled for the GPU"
else
cuda-check: $(CUDA_OBJ)
endif

# Tests link the emulated CUDA device (engine/gpu/gpu_emulated.c, from gpu.mk), objects first.
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(GPU_EMULATED_OBJ) $(TEST_SUPPORT_OBJ) $(LIB) $(CUEMU_LIB)
	$(CC) -o $@ $^ $(LDLIBS)

# The distributed tests use engine/dist, which links libmpi when the build has MPI.
$(BUILD)/tests/test_dist: $(BUILD)/tests/test_dist.o $(GPU_EMULATED_OBJ) $(TEST_SUPPORT_OBJ) $(LIB) $(CUEMU_LIB)
	$(CC) -o $@ $^ $(MPI_LDLIBS) $(LDLIBS)

# The emulator's tests also link the test kernels (before the libraries whose symbols they use).
$(BUILD)/tests/test_emu: $(BUILD)/tests/test_emu.o $(EMU_TEST_KERNEL_OBJ) $(GPU_EMULATED_OBJ) $(TEST_SUPPORT_OBJ) $(LIB) $(CUEMU_LIB)
	$(CC) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(GPU_NONE_OBJ) $(LIB) $(CUEMU_LIB)
	$(CC) -o $@ $^ $(LDLIBS)

# tailor on the emulated CUDA device: `--device cuda` runs every kernel on the emulator (slowly),
# so the whole device path of a command can be tested end to end without a GPU.
$(BUILD)/tailor-emu: $(TOOL_SRC:%.c=$(BUILD)/%.o) $(GPU_EMULATED_OBJ) $(LIB) $(CUEMU_LIB)
	$(CC) -o $@ $^ $(MPI_LDLIBS) $(LDLIBS)

# The CUDA programs (built when nvcc is found; CI compiles and links them, nothing here runs them):
# the same tools over cudart, cuBLAS and cuDNN with the kernels compiled by nvcc.
$(BUILD)/tailor-cuda: $(TOOL_SRC:%.c=$(BUILD)/%.o) $(GPU_CUDART_OBJ) $(LIB) $(KERNEL_CUDA_OBJ)
	$(CC) -o $@ $^ $(GPU_CUDA_LDLIBS) -lstdc++ $(MPI_LDLIBS) $(LDLIBS)

$(BUILD)/kbench-cuda: $(BUILD)/kernels/bench/kbench.o $(GPU_CUDART_OBJ) $(LIB) $(KERNEL_CUDA_OBJ)
	$(CC) -o $@ $^ $(GPU_CUDA_LDLIBS) -lstdc++ $(LDLIBS)

# kbench: kernel microbenchmarks on the emulated device here (validation only; timings meaningless).
$(KBENCH): $(BUILD)/kernels/bench/kbench.o $(GPU_EMULATED_OBJ) $(LIB) $(CUEMU_LIB)
	$(CC) -o $@ $^ $(LDLIBS)

test: $(TEST_BIN) $(TAILOR) $(BUILD)/tailor-emu $(KBENCH)
	@BUILD=$(BUILD) sh tests/run_all.sh $(TEST_BIN)

bench: $(BENCH_BIN) $(KBENCH)
	@for b in $(BENCH_BIN) $(KBENCH); do echo "== $$b"; $$b || exit 1; done

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
