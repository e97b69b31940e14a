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

ENGINE_SRC := $(wildcard engine/*.c engine/cpu/*.c models/*.c diffusion/*.c adapt/*.c data/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libtailor.a

TOOL_SRC := $(wildcard tools/*.c)
TAILOR := $(BUILD)/tailor

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT_SRC := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)

BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test bench clean
.SECONDARY:
all: $(LIB) $(TAILOR)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(TAILOR): $(TOOL_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_SUPPORT_OBJ) $(LIB)
	$(CC) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) -o $@ $^ $(LDLIBS)

test: $(TEST_BIN) $(TAILOR)
	@BUILD=$(BUILD) sh tests/run_all.sh $(TEST_BIN)

bench: $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
