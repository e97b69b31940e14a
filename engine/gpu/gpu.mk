# engine/gpu/gpu.mk — build rules of the device runtime (engine/gpu/gpu.h). The Makefile includes it
# after its own variables and its generic `$(BUILD)/%.o: %.c` rule:
#     include engine/gpu/gpu.mk
#
# Expects (set before the include):
#   CC, CFLAGS        the C compiler and flags (CFLAGS has -I. so "engine/..." includes resolve)
#   BUILD             the build directory (build, or build-san with SANITIZE=1)
#   NVCC              path of nvcc, or empty when there is none: the CUDA rules are then left out
#   LDLIBS            the CPU program's link libraries
#   LIB, TEST_SUPPORT_OBJ   libtailor.a and the test helpers' objects (for the test rule below)
#   CUEMU_LIB         the emulator's library (libcuemu.a): the emulated device takes its launch
#                     errors from it, so it is linked after GPU_EMULATED_OBJ
# Optional overrides:
#   CUDA_HOME         default: the directory above nvcc's bin/ (/usr/local/cuda-13.0 here)
#   CUDNN_CFLAGS, CUDNN_LDFLAGS   -I / -L for a cuDNN outside CUDA_HOME (e.g. Debian's packages)
#
# Provides:
#   GPU_NONE_OBJ      link into the CPU program (tailor): no device, every device call stops clearly
#   GPU_EMULATED_OBJ  link into the tests (before $(LIB) and $(CUEMU_LIB)): the emulated device;
#                     the Makefile's generic test rule links it into every test program
#   GPU_CUDART_OBJ    link into the CUDA program, with GPU_CUDA_LDLIBS
#   GPU_CUDA_LDLIBS   -L$(CUDA_HOME)/lib64 (+ rpath) -lcudart -lcublas -lcudnn
#   GPU_CUDART_CFLAGS what gpu_cudart.c compiles with besides CFLAGS (CUDA include dir, -Werror)
#   gpu-link-check    (phony) compiles gpu_cudart.c, links it with a small main against cudart,
#                     cuBLAS and cuDNN, and runs it (0 devices and exit 0 without a GPU); says it
#                     skipped when NVCC is empty
#
# The three implementations define the same symbols, so none of engine/gpu/*.c may go into
# libtailor.a (the Makefile's ENGINE_SRC wildcard does not reach engine/gpu/).

GPU_COMMON_OBJ := $(BUILD)/engine/gpu/gpu_allocator.o

GPU_NONE_OBJ := $(BUILD)/engine/gpu/gpu_none.o $(BUILD)/engine/gpu/gpu_comm_none.o $(GPU_COMMON_OBJ)
GPU_EMULATED_OBJ := $(BUILD)/engine/gpu/gpu_emulated.o $(BUILD)/engine/gpu/gpu_comm_none.o $(GPU_COMMON_OBJ)
# Device collectives over NCCL (engine/gpu/gpu_comm.h), from the CUDA toolkit's include and lib64
# directories or NCCL_HOME.
GPU_CUDART_OBJ := $(BUILD)/engine/gpu/gpu_cudart.o $(BUILD)/engine/gpu/gpu_comm_nccl.o $(GPU_COMMON_OBJ)

.PHONY: gpu-link-check

ifneq ($(strip $(NVCC)),)

ifndef CUDA_HOME
CUDA_HOME := $(patsubst %/bin/nvcc,%,$(realpath $(shell command -v $(NVCC))))
CUDA_HOME := $(if $(CUDA_HOME),$(CUDA_HOME),/usr/local/cuda)
endif
CUDA_LIBDIR := $(CUDA_HOME)/lib64
ifneq ($(strip $(NCCL_HOME)),)
NCCL_CFLAGS := -I$(NCCL_HOME)/include
NCCL_LDFLAGS := -L$(NCCL_HOME)/lib -Wl,-rpath,$(NCCL_HOME)/lib
endif
GPU_CUDART_CFLAGS := -I$(CUDA_HOME)/include $(CUDNN_CFLAGS) $(NCCL_CFLAGS) -Werror
GPU_CUDA_LDLIBS := -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) $(CUDNN_LDFLAGS) $(NCCL_LDFLAGS) -lcudart -lcublas -lcudnn -lnccl

# Host code over the CUDA headers: compiled by the C compiler, not nvcc.
$(BUILD)/engine/gpu/gpu_cudart.o: engine/gpu/gpu_cudart.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GPU_CUDART_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/engine/gpu/gpu_comm_nccl.o: engine/gpu/gpu_comm_nccl.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(GPU_CUDART_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gpu-link-check: $(BUILD)/engine/gpu/gpu_link_check.o $(GPU_CUDART_OBJ)
	$(CC) -o $@ $^ $(GPU_CUDA_LDLIBS) $(LDLIBS)

gpu-link-check: $(BUILD)/gpu-link-check
	$(BUILD)/gpu-link-check

else

gpu-link-check:
	@echo "gpu-link-check: skipped (no nvcc, so no CUDA program is built)"

endif
