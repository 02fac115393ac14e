# vdp — one `make`, one binary.
#   make                  ./vdp (CPU backend always; CUDA + NCCL backend when nvcc is found)
#   make GPU_ARCH=90      build the CUDA backend for one architecture only (default: 80 86 89 90)
#   make CUDA=0           CPU-only build even where nvcc exists
#   make test             the CPU test suite (what CI runs)
#   make test SANITIZE=1  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-gpu         GPU tests (on a machine with a GPU)
#   make fuzz             libFuzzer targets for the .vdpw and safetensors parsers (clang)
CC      ?= gcc
NVCC    ?= nvcc
CUDA_HOME ?= /usr/local/cuda
OPT     ?= -O3
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -fopenmp -D_GNU_SOURCE -I.
LDLIBS  += -lpng -ljpeg -lm -lpthread
GPU_ARCH ?= 80 86 89 90

ifeq ($(SANITIZE),1)
  CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address,undefined
  OPT = -O1
  CUDA = 0
  BUILD = build/san
else
  BUILD = build/rel
endif

HAVE_NVCC := $(shell command -v $(NVCC) >/dev/null 2>&1 && echo 1)
ifeq ($(CUDA),0)
  HAVE_NVCC :=
endif

LIB_SRC  = util.c safetensors.c sgm.c weights.c ops.c model.c rng.c image.c ring.c
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC = $(wildcard test/test_*.c)
TEST_BIN = $(TEST_SRC:test/%.c=$(BUILD)/test/%)

ifneq ($(HAVE_NVCC),1)
  BUILD := $(BUILD)-cpu
endif

ifeq ($(HAVE_NVCC),1)
  CFLAGS  += -DVDP_CUDA -I$(CUDA_HOME)/include
  GENCODE  = $(foreach a,$(GPU_ARCH),-gencode arch=compute_$(a),code=sm_$(a))
  CUDA_OBJ = $(BUILD)/kernels.o
  LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lnccl -lstdc++
  BACKENDS = CPU + CUDA (sm_$(GPU_ARCH)) + NCCL
else
  BACKENDS = CPU only (nvcc not found or CUDA=0)
endif

all: vdp
	@echo 'vdp: built with backends: $(BACKENDS)'

# build/last-config names the build that ./vdp came from, so switching CUDA / SANITIZE relinks it.
vdp: $(BUILD)/vdp.o $(LIB_OBJ) $(CUDA_OBJ) build/last-config
	$(CC) $(LDFLAGS) -fopenmp -o $@ $(filter %.o,$^) $(LDLIBS)

$(BUILD)/gpu-arch: FORCE | $(BUILD)/test
	@echo '$(GPU_ARCH)' | cmp -s - $@ || echo '$(GPU_ARCH)' > $@

build/last-config: FORCE
	@mkdir -p build; echo '$(BUILD) $(GPU_ARCH)' | cmp -s - $@ || echo '$(BUILD) $(GPU_ARCH)' > $@

$(BUILD)/%.o: %.c vdp.h model.h ring.h | $(BUILD)/test
	$(CC) $(CFLAGS) -c -o $@ $<

# $(BUILD)/gpu-arch records GPU_ARCH, so changing it recompiles the kernels.
$(BUILD)/kernels.o: kernels.cu kernels.h vdp.h model.h $(BUILD)/gpu-arch | $(BUILD)/test
	$(NVCC) -O3 -std=c++17 $(GENCODE) -I. -Xcompiler -fPIC -c -o $@ $<

$(BUILD)/test/%: test/%.c $(LIB_OBJ) $(CUDA_OBJ) vdp.h model.h ring.h test/golden.h | $(BUILD)/test
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_OBJ) $(CUDA_OBJ) $(LDLIBS)

$(BUILD)/test:
	mkdir -p $@

test: vdp $(TEST_BIN)
	BUILD=$(BUILD) TESTS="$(TESTS)" bash test/run_tests.sh

test-gpu: vdp
	bash test/run_gpu_tests.sh

fuzz:
	bash test/fuzz.sh

clean:
	rm -rf build vdp

.PHONY: all test test-gpu fuzz clean FORCE
