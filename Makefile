# vdp — one `make`, one binary.
#   make                  ./vdp (CPU backend always; CUDA + NCCL backend when nvcc is found)
#   make GPU_ARCH=90      build the CUDA backend for one architecture only (default: 80 86 89 90)
#   make CUDA=0           CPU-only build even where nvcc exists
#   make test             the CPU test suite (what CI runs)
#   make test SANITIZE=1  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-gpu         GPU tests (on a machine with a GPU)
#   make fuzz             libFuzzer targets for the .vdpw and safetensors parsers (clang)
#   make vdp-simt         ./vdp-simt: vdp whose CUDA backend runs kernels.cu on the CPU (host SIMT emulator,
#                         test/simt/; needs the CUDA headers only, no nvcc, no GPU): --device cuda, slow but exact
#   make test-simt-full   the whole emulated gpu_pipeline (every Backend op, CLIP, VAE, UNet, two pipelines)
#   make test-simt-tsan   the emulated kernel tests under ThreadSanitizer (clang++, one TSan fiber per thread)
#   make gpu-resources    bench/gpu-resources.md: ptxas registers / spills / stack / smem per kernel for sm_80..90
#                         and the occupancy of each launch configuration (tools/gpu_resources.sh; needs nvcc)
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

LIB_SRC  = util.c safetensors.c sgm.c weights.c ops.c model.c rng.c image.c ring.c cfgpar.c
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

# The host SIMT emulator (test/simt; rules at the end): what `make test` adds.
SIMT_CXX ?= g++
CUDA_INC  = $(CUDA_HOME)/include
HAVE_CUDA_HEADERS := $(and $(wildcard $(CUDA_INC)/cuda_runtime.h),$(wildcard $(CUDA_INC)/cuda_fp16.h),$(wildcard $(CUDA_INC)/nccl.h))
ifeq ($(SANITIZE),1)
  SIMT ?= build/simt-san
  SIMT_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else
  SIMT ?= build/simt
  SIMT_SAN =
endif
SIMT_OPT ?= -O2
SIMT_CXXFLAGS = -std=c++17 $(SIMT_OPT) -g -ffp-contract=off -fno-strict-aliasing -Wall -Wno-unused-parameter \
                -Wno-unused-function -Wno-unknown-pragmas -I. -I$(CUDA_INC) $(SIMT_SAN)
SIMT_CFLAGS = -std=c11 $(SIMT_OPT) -g -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -fopenmp \
              -D_GNU_SOURCE -I. -DVDP_CUDA -I$(CUDA_INC) $(SIMT_SAN)
SIMT_LIBS = -fopenmp $(SIMT_SAN) -lstdc++ -lpng -ljpeg -lm -lpthread
SIMT_LIB_OBJ = $(LIB_SRC:%.c=$(SIMT)/%.o)
SIMT_KOBJ = $(SIMT)/kernels.o $(SIMT)/simt.o $(SIMT)/simt_nccl.o $(SIMT_EXTRA_OBJ)
# the profiling build (make simt-prof) adds compile flags for the kernels only and the objects standing in for
# the ThreadSanitizer runtime (test/simt/prof_hooks.cpp)
SIMT_KFLAGS ?=
SIMT_EXTRA_OBJ ?=
SIMT_PROF = build/simt-prof
SIMT_BINS = $(SIMT)/test_gpu_kernels $(SIMT)/gpu_pipeline $(SIMT)/vdp $(SIMT)/simt_selftest $(SIMT)/multi_selftest \
            $(SIMT)/batch_invariance $(SIMT)/build.env
# `make` builds the emulated kernels (from the CUDA headers alone), `make test` the emulated binaries too,
# unless TESTS names only other tests
ifneq ($(HAVE_CUDA_HEADERS),)
  SIMT_ALL = $(SIMT_KOBJ)
  SIMT_T = $(if $(strip $(TESTS)),$(filter t_simt%,$(TESTS)),t_simt_kernels t_simt_pipeline t_simt_mutants t_simt_selftest \
                                                                t_simt_profile t_simt_multi t_simt_ring t_simt_cfg)
  SIMT_FOR_TEST = $(sort $(if $(filter t_simt_kernels t_simt_mutants,$(SIMT_T)),$(SIMT)/test_gpu_kernels $(SIMT)/build.env) \
                         $(if $(filter t_simt_pipeline t_simt_mutants,$(SIMT_T)),$(SIMT)/gpu_pipeline $(SIMT)/vdp) \
                         $(if $(filter t_simt_selftest,$(SIMT_T)),$(SIMT)/simt_selftest) \
                         $(if $(filter t_simt_profile,$(SIMT_T)),simt-prof-selftest) \
                         $(if $(filter t_simt_multi,$(SIMT_T)),$(SIMT)/multi_selftest $(SIMT)/vdp) \
                         $(if $(filter t_simt_ring,$(SIMT_T)),$(SIMT)/vdp) \
                         $(if $(filter t_simt_cfg,$(SIMT_T)),$(SIMT)/vdp $(SIMT)/batch_invariance))
endif

all: vdp $(SIMT_ALL)
	@echo 'vdp: built with backends: $(BACKENDS)'

# build/last-config names the build that ./vdp came from, so switching CUDA / SANITIZE relinks it.
vdp: $(BUILD)/vdp.o $(LIB_OBJ) $(CUDA_OBJ) build/last-config
	$(CC) $(LDFLAGS) -fopenmp -o $@ $(filter %.o,$^) $(LDLIBS)

$(BUILD)/gpu-arch: FORCE | $(BUILD)/test
	@echo '$(GPU_ARCH)' | cmp -s - $@ || echo '$(GPU_ARCH)' > $@

build/last-config: FORCE
	@mkdir -p build; echo '$(BUILD) $(GPU_ARCH)' | cmp -s - $@ || echo '$(BUILD) $(GPU_ARCH)' > $@

$(BUILD)/%.o: %.c vdp.h model.h ring.h cfgpar.h | $(BUILD)/test
	$(CC) $(CFLAGS) -c -o $@ $<

# $(BUILD)/gpu-arch records GPU_ARCH, so changing it recompiles the kernels.
$(BUILD)/kernels.o: kernels.cu kernels.h vdp.h model.h $(BUILD)/gpu-arch | $(BUILD)/test
	$(NVCC) -O3 -std=c++17 $(GENCODE) -I. -Xcompiler -fPIC -c -o $@ $<

$(BUILD)/test/%: test/%.c $(LIB_OBJ) $(CUDA_OBJ)  vdp.h model.h ring.h test/golden.h test/check.h | $(BUILD)/test
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_OBJ) $(CUDA_OBJ) $(LDLIBS)

$(BUILD)/test:
	mkdir -p $@

test: vdp $(TEST_BIN) $(SIMT_FOR_TEST)
	BUILD=$(BUILD) SIMT=$(SIMT) TESTS="$(TESTS)" bash test/run_tests.sh

test-gpu: vdp
	bash test/run_gpu_tests.sh

fuzz:
	bash test/fuzz.sh

clean:
	rm -rf build vdp

# ----- the host SIMT emulator (test/simt): kernels.cu compiled by g++ from the CUDA headers alone -----
# $(SIMT)/kernels.o = the kernels with their static __shared__ variables between two markers (ld -r, shm.ld);
# $(SIMT)/simt.o = the runtime (fibers, collectives, the CUDA runtime subset, SIMT_DEVICES emulated devices);
# $(SIMT)/simt_nccl.o = the emulated NCCL. The C objects are compiled again with -DVDP_CUDA (the real build may be
# CUDA=0). Required flags: -ffp-contract=off (the bit-exact sampler step), -fno-strict-aliasing (the kernels
# type-pun __half <-> uint32_t / uint4).
ifeq ($(HAVE_CUDA_HEADERS),)
$(SIMT_BINS) vdp-simt:
	@echo 'simt: error: the CUDA headers (cuda_runtime.h, cuda_fp16.h, nccl.h) were not found in $(CUDA_INC):' \
	      'the SIMT emulator compiles kernels.cu from them (no nvcc, no GPU needed); set CUDA_HOME' >&2; exit 1
else
# the compilers and flags, for test/t_simt_mutants.sh (which compiles mutated copies of kernels.cu and model.c)
$(SIMT)/build.env: FORCE | $(SIMT)
	@printf "SIMT_CXX='%s'\nSIMT_CXXFLAGS='%s'\nSIMT_LIBS='%s'\nSIMT_CC='%s'\nSIMT_CFLAGS='%s'\nSIMT_LIB_SRC='%s'\n" \
	  '$(SIMT_CXX)' '$(SIMT_CXXFLAGS)' '$(SIMT_LIBS)' '$(CC)' '$(SIMT_CFLAGS)' '$(LIB_SRC)' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

# `extern __shared__ T name[];` -> SIMT_DYNAMIC_SHARED(T, name): the definitions simt.h needs
SIMT_DYN_SED = s/.*extern __shared__ \(__align__([0-9]*) \)\{0,1\}\([A-Za-z_][A-Za-z_0-9 ]*[A-Za-z_0-9]\) \{1,\}\([A-Za-z_][A-Za-z_0-9]*\)\[\];.*/SIMT_DYNAMIC_SHARED(\2, \3)/p
$(SIMT)/dynshared.h: kernels.cu | $(SIMT)
	sed -n '$(SIMT_DYN_SED)' $< | sort -u > $@.tmp && mv $@.tmp $@
$(SIMT)/selftest_dynshared.h: test/simt/selftest.cu | $(SIMT)
	sed -n '$(SIMT_DYN_SED)' $< | sort -u > $@.tmp && mv $@.tmp $@

$(SIMT)/kernels_body.o: kernels.cu kernels.h vdp.h model.h test/simt/simt.h $(SIMT)/dynshared.h | $(SIMT)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) $(SIMT_KFLAGS) -fdata-sections -x c++ -include test/simt/simt.h -include $(SIMT)/dynshared.h -c -o $@ $<

$(SIMT)/shm_begin.o: test/simt/shm_mark.cpp | $(SIMT)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) -DSIMT_MARK_BEGIN -c -o $@ $<
$(SIMT)/shm_end.o: test/simt/shm_mark.cpp | $(SIMT)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) -DSIMT_MARK_END -c -o $@ $<
$(SIMT)/kernels.o: $(SIMT)/shm_begin.o $(SIMT)/kernels_body.o $(SIMT)/shm_end.o test/simt/shm.ld
	ld -r -T test/simt/shm.ld -o $@ $(filter %.o,$^)

# the emulator's own tests (test/t_simt_selftest.sh)
$(SIMT)/selftest_body.o: test/simt/selftest.cu test/simt/simt.h $(SIMT)/selftest_dynshared.h | $(SIMT)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) $(SIMT_KFLAGS) -fdata-sections -x c++ -include test/simt/simt.h -include $(SIMT)/selftest_dynshared.h -c -o $@ $<
$(SIMT)/selftest.o: $(SIMT)/shm_begin.o $(SIMT)/selftest_body.o $(SIMT)/shm_end.o test/simt/shm.ld
	ld -r -T test/simt/shm.ld -o $@ $(filter %.o,$^)
$(SIMT)/simt_selftest: $(SIMT)/selftest.o $(SIMT)/simt.o $(SIMT)/simt_nccl.o $(SIMT_EXTRA_OBJ)
	$(SIMT_CXX) -o $@ $^ $(SIMT_LIBS)

# the emulated devices' and NCCL's tests (test/t_simt_multi.sh)
$(SIMT)/multi_selftest_body.o: test/simt/multi_selftest.cu test/simt/simt.h | $(SIMT)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) $(SIMT_KFLAGS) -fdata-sections -x c++ -include test/simt/simt.h -c -o $@ $<
$(SIMT)/multi_selftest.o: $(SIMT)/shm_begin.o $(SIMT)/multi_selftest_body.o $(SIMT)/shm_end.o test/simt/shm.ld
	ld -r -T test/simt/shm.ld -o $@ $(filter %.o,$^)
$(SIMT)/multi_selftest: $(SIMT)/multi_selftest.o $(SIMT)/simt.o $(SIMT)/simt_nccl.o $(SIMT_EXTRA_OBJ)
	$(SIMT_CXX) -o $@ $^ $(SIMT_LIBS)

$(SIMT)/simt_nccl.o: test/simt/simt_nccl.cpp test/simt/simt_rt.h | $(SIMT)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) $(SIMT_RT_FLAGS) -c -o $@ $<

# the runtime: simt.cpp and the SIMT_PROFILE counters (profile.cpp) as one object
$(SIMT)/simt_rt.o: test/simt/simt.cpp test/simt/simt.h test/simt/simt_rt.h test/simt/profile.h | $(SIMT)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) $(SIMT_RT_FLAGS) -c -o $@ $<
$(SIMT)/profile.o: test/simt/profile.cpp test/simt/simt.h test/simt/profile.h | $(SIMT)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) $(SIMT_RT_FLAGS) -c -o $@ $<
$(SIMT)/simt.o: $(SIMT)/simt_rt.o $(SIMT)/profile.o
	ld -r -o $@ $^

# the profiling build only: the stand-in for the TSan runtime, and the counters' own test
$(SIMT)/prof_hooks.o: test/simt/prof_hooks.cpp test/simt/simt.h test/simt/profile.h | $(SIMT)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) $(SIMT_RT_FLAGS) -c -o $@ $<
$(SIMT)/prof_selftest_dynshared.h: test/simt/prof_selftest.cu | $(SIMT)
	sed -n '$(SIMT_DYN_SED)' $< | sort -u > $@.tmp && mv $@.tmp $@
$(SIMT)/prof_selftest_body.o: test/simt/prof_selftest.cu test/simt/simt.h test/simt/profile.h $(SIMT)/prof_selftest_dynshared.h | $(SIMT)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) $(SIMT_KFLAGS) -fdata-sections -x c++ -include test/simt/simt.h -include $(SIMT)/prof_selftest_dynshared.h -c -o $@ $<
$(SIMT)/prof_selftest.o: $(SIMT)/shm_begin.o $(SIMT)/prof_selftest_body.o $(SIMT)/shm_end.o test/simt/shm.ld
	ld -r -T test/simt/shm.ld -o $@ $(filter %.o,$^)
$(SIMT)/simt_prof_selftest: $(SIMT)/prof_selftest.o $(SIMT)/simt.o $(SIMT)/simt_nccl.o $(SIMT_EXTRA_OBJ)
	$(SIMT_CXX) -o $@ $^ $(SIMT_LIBS)

$(SIMT)/%.o: %.c vdp.h model.h ring.h cfgpar.h kernels.h | $(SIMT)
	$(CC) $(SIMT_CFLAGS) -c -o $@ $<

$(SIMT)/test_gpu_kernels: test/test_gpu_kernels.cu $(SIMT)/ops.o $(SIMT)/util.o $(SIMT_KOBJ) kernels.h vdp.h
	$(SIMT_CXX) $(SIMT_CXXFLAGS) -x c++ -o $@ $< -x none $(SIMT)/ops.o $(SIMT)/util.o $(SIMT_KOBJ) $(SIMT_LIBS)

$(SIMT)/gpu_pipeline: test/gpu_pipeline.c test/golden.h $(SIMT_LIB_OBJ) $(SIMT_KOBJ)
	$(CC) $(SIMT_CFLAGS) -o $@ $< $(SIMT_LIB_OBJ) $(SIMT_KOBJ) $(SIMT_LIBS)

$(SIMT)/batch_invariance: test/batch_invariance.c $(SIMT_LIB_OBJ) $(SIMT_KOBJ)
	$(CC) $(SIMT_CFLAGS) -o $@ $< $(SIMT_LIB_OBJ) $(SIMT_KOBJ) $(SIMT_LIBS)

$(SIMT)/vdp: $(SIMT)/vdp.o $(SIMT_LIB_OBJ) $(SIMT_KOBJ)
	$(CC) -o $@ $^ $(SIMT_LIBS)

vdp-simt: $(SIMT)/vdp
	cp $< $@.tmp && mv $@.tmp $@
	@echo 'vdp-simt: vdp with the CUDA backend on the host SIMT emulator (--device cuda runs kernels.cu on the CPU)'
endif

$(SIMT):
	mkdir -p $@

test-simt-full: $(SIMT_BINS)
	SIMT=$(SIMT) bash test/t_simt_pipeline.sh --full

# The profiling build (build/simt-prof): SIMT_PROFILE=1 also counts the kernels' plain loads and stores
# (test/simt/profile.cpp): g++'s ThreadSanitizer instrumentation on the kernels, prof_hooks.cpp instead of its
# runtime. SIMT_PROF_TARGETS: what to build there (default: the counters' test and the kernel tests).
SIMT_PROF_TARGETS ?= $(SIMT_PROF)/simt_prof_selftest $(SIMT_PROF)/test_gpu_kernels
simt-prof:
	$(MAKE) SIMT=$(SIMT_PROF) SIMT_SAN= SIMT_KFLAGS='-fsanitize=thread' SIMT_EXTRA_OBJ=$(SIMT_PROF)/prof_hooks.o $(SIMT_PROF_TARGETS)

# ThreadSanitizer: clang++ (GCC guards block-scope thread_local arrays, which TSan reports as races)
test-simt-tsan:
	$(MAKE) SIMT=build/simt-tsan SIMT_CXX=clang++ CC=clang SIMT_OPT=-O1 \
	  SIMT_SAN='-fsanitize=thread -fno-omit-frame-pointer' SIMT_RT_FLAGS='-fno-sanitize=thread -DSIMT_TSAN=1' \
	  build/simt-tsan/test_gpu_kernels
	OMP_NUM_THREADS=1 SIMT=build/simt-tsan bash test/t_simt_kernels.sh --tsan

# ----- GPU performance figures that need no GPU (issue #18) -----
simt-prof-selftest:
	$(MAKE) SIMT_PROF_TARGETS=$(SIMT_PROF)/simt_prof_selftest simt-prof

gpu-resources:
	bash tools/gpu_resources.sh --out bench/gpu-resources.md
	@echo 'gpu-resources: wrote bench/gpu-resources.md'

.PHONY: all test test-gpu fuzz clean FORCE vdp-simt test-simt-full test-simt-tsan gpu-resources simt-prof simt-prof-selftest
