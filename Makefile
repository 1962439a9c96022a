# gmserve - build, test and benchmark.
#
#   make                 build/gmserve and the core library
#   make test            every test (unit, reference parity, integration)
#   make test SAN=1      the same under AddressSanitizer + UBSan (in build/san)
#   make fixtures        regenerate the PyTorch reference fixtures (needs python3-torch)
#   make test-python     the exporter's tests (python/, needs python3-torch; gmserve check when built)
#   make test-browser    the web page in headless chromium (playwright-core from npm)
#   make test-openapi    GET /openapi.json through two OpenAPI 3.1 validators (npm)
#   make test-deploy     the image and compose file, run with podman (root)
#   make test-k8s        the Kubernetes manifests (k8s/), rendered and run with podman kube play (root)
#   make test-kserve     the KServe manifests (k8s/kserve) rendered, checked and their command line run
#   make weights         retrain the bundled models (models/README.md; python3-torch, ~2 h)
#   make eval            measure the bundled models with gmserve eval (Fashion-MNIST)
#   make run             the daemon on config/gmserve.json (http://127.0.0.1:8080)
#   make bench-core      core throughput next to PyTorch and the sgemm roofline
#   make bench-http      the live daemon under load (wrk), batching on and off
#   make bench-scaling   CPU, queue depth and latency as the load steps up (scaling signals)
#   make bench-peer      gmserve against a FastAPI + uvicorn + PyTorch server on the same models
#   make profile-http    where the daemon's CPU goes per request under load (perf), by category
#   make deps            install the Debian packages the build needs
#   make fuzz            the libFuzzer harnesses of fuzz/, FUZZ_SECONDS (60) each (needs clang)
#   make soak            30 min of mixed load with attacks mixed in (SOAK_SECONDS; not run by CI)

CC     ?= cc
ARCH   ?= native
SAN    ?= 0
TORCH_PY ?= /usr/bin/python3

PKGS   := libmicrohttpd jansson libpng openblas zlib
BUILD  := build$(if $(filter 1,$(SAN)),/san,)

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Wshadow -Wno-unused-parameter -fopenmp-simd \
               -march=$(ARCH) -Iinclude $(shell pkg-config --cflags $(PKGS))
ifeq ($(SAN),1)
  CFLAGS  := $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS := -fsanitize=address,undefined
else
  CFLAGS  := $(CFLAGS_BASE) -O2
  LDFLAGS :=
endif
LDLIBS := $(shell pkg-config --libs $(PKGS)) -lm -lpthread
# The core's loops are multiply-adds: -std=c11 turns FMA contraction off,
# which cost NADE 1.6x; no result depends on a product being rounded before
# its add (the float64 reference tests hold their tolerances). GCC tunes the
# vectorizer to 256-bit vectors on AMD cores that have AVX-512; 512-bit ones
# halve the instructions of the NADE and likelihood loops (the flag is inert
# for ARCH=x86-64-v3, the container's build). -fno-trapping-math lets GCC
# if-convert the clamps and sign selects of vmath.h's exp, tanh and sigmoid
# (a float compare may trap otherwise), so the loops over them vectorize:
# scalar, the gate of a gated PixelCNN took 37 % of its log p. No code reads
# floating-point exception flags, and results are the same bit for bit.
# -fno-math-errno lets sqrt be one instruction in a vector loop (the
# Box-Muller normals of rng.c); no code reads errno after a math call.
CORE_CFLAGS := -ffp-contract=fast -mprefer-vector-width=512 -fno-trapping-math -fno-math-errno

# the core (models), the daemon (server/), gmserve eval (tools/eval/, linked
# into the binary as a subcommand) and the NADE trainer's gradient
# (models/train/, used by the trainer and its test only)
CORE_SRC   := $(wildcard server/core/*.c)
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
EVAL_SRC   := $(wildcard tools/eval/*.c)
TRAIN_SRC  := models/train/nade_grad.c
TEST_SRC   := $(wildcard tests/test_*.c)
CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
EVAL_OBJ   := $(EVAL_SRC:%.c=$(BUILD)/%.o)
TRAIN_OBJ  := $(TRAIN_SRC:%.c=$(BUILD)/%.o)
TESTS      := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
HEADERS    := $(wildcard include/gm/*.h server/*.h server/core/*.h tools/eval/*.h models/train/*.h)
INCLUDES   := -Iserver -Itools/eval -Imodels/train
LIBS       := $(BUILD)/libgmeval.a $(BUILD)/libgmtrain.a $(BUILD)/libgmserver.a $(BUILD)/libgmcore.a

.PHONY: all test test-browser test-deploy fixtures deps clean bench-core bench-http run weights eval
all: $(BUILD)/gmserve

$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INCLUDES) -c $< -o $@

$(CORE_OBJ): CFLAGS += $(CORE_CFLAGS)

$(BUILD)/libgmcore.a: $(CORE_OBJ)
	ar rcs $@ $^

$(BUILD)/libgmserver.a: $(SERVER_OBJ)
	ar rcs $@ $^

$(BUILD)/libgmeval.a: $(EVAL_OBJ)
	ar rcs $@ $^

$(BUILD)/libgmtrain.a: $(TRAIN_OBJ)
	ar rcs $@ $^

$(BUILD)/gmserve: $(BUILD)/server/main.o $(BUILD)/libgmeval.a $(BUILD)/libgmserver.a $(BUILD)/libgmcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INCLUDES) -o $@ $< $(LIBS) $(LDFLAGS) $(LDLIBS) -lcmocka

test: $(TESTS) $(BUILD)/gmserve
	@bash tests/run_all.sh $(BUILD)

test-browser: $(BUILD)/gmserve
	@bash tests/browser/run.sh $(BUILD)

.PHONY: test-openapi
test-openapi: $(BUILD)/gmserve
	@bash tests/openapi/run.sh $(BUILD)

test-deploy:
	@bash tests/deploy/run.sh

fixtures:
	OMP_NUM_THREADS=1 $(TORCH_PY) tests/make_fixtures.py tests/fixtures

$(BUILD)/bench_core: bench/bench_core.c $(BUILD)/libgmcore.a
	$(CC) $(CFLAGS) $(CORE_CFLAGS) -o $@ $< $(BUILD)/libgmcore.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/nade_train: models/train/nade_train.c $(LIBS)
	$(CC) $(CFLAGS) $(INCLUDES) -o $@ $< $(LIBS) $(LDFLAGS) $(LDLIBS)

weights: $(BUILD)/nade_train $(BUILD)/gmserve
	TORCH_PY=$(TORCH_PY) bash models/train/train_all.sh $(BUILD)

eval: $(BUILD)/gmserve
	@mkdir -p $(BUILD)/eval
	$(BUILD)/gmserve eval --nade models/nade.safetensors --vae models/vae.safetensors \
	    --gan models/gan.safetensors --aae models/aae.safetensors --infogan models/infogan.safetensors \
	    --pixelcnn models/pixelcnn.safetensors --pixelrnn models/pixelrnn.safetensors --classifier models/classifier.safetensors \
	    --stargan models/stargan.safetensors --cyclegan models/cyclegan.safetensors --cycle-classes 7,9 \
	    --json $(BUILD)/eval/metrics.json --grids $(BUILD)/eval

bench-core: $(BUILD)/bench_core
	@bash bench/bench_core.sh $(BUILD)

bench-http: $(BUILD)/gmserve
	@bash bench/bench_http.sh $(BUILD)

run: $(BUILD)/gmserve
	OPENBLAS_NUM_THREADS=1 $(BUILD)/gmserve --config config/gmserve.json

deps:
	bash scripts/install-deps.sh

clean:
	rm -rf build

# ---- fuzzing (README.md, "Fuzzing") ----
#
#   make fuzz                 build the libFuzzer harnesses with clang (ASan + UBSan), replay
#                             fuzz/regressions/<harness>/, then run each for FUZZ_SECONDS (default 60)
#   make fuzz FUZZ_SECONDS=5  a short run; one harness: make fuzz FUZZERS=png
#   make fuzz FUZZ_FLAGS='-fork=1 -ignore_crashes=1'   go on past crashes, collecting them all
#
# New corpus entries go to build/fuzz/corpus/<harness>/ (the committed seeds in
# fuzz/corpus/<harness>/ are only read); crashing inputs to build/fuzz/crashes/<harness>/.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZERS      ?= safetensors model png api config oip
FUZZ_FLAGS   ?=
FUZZ_BUILD   := build/fuzz
FUZZ_CFLAGS  := $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined -Wno-pass-failed -Iserver -DGM_FIXTURES='"$(CURDIR)/tests/fixtures"'
FUZZ_OBJ     := $(filter-out $(FUZZ_BUILD)/server/main.o,$(CORE_SRC:%.c=$(FUZZ_BUILD)/%.o) $(SERVER_SRC:%.c=$(FUZZ_BUILD)/%.o))
# per harness: the largest input, and the largest single allocation that is not a finding (MB)
FUZZ_MAX_LEN_safetensors := 65536
FUZZ_MAX_LEN_model       := 65536
FUZZ_MAX_LEN_png         := 16384
FUZZ_MAX_LEN_api         := 16384
FUZZ_MAX_LEN_config      := 4096
FUZZ_MAX_LEN_oip         := 16384
FUZZ_MALLOC_safetensors  := 256
FUZZ_MALLOC_model        := 512
FUZZ_MALLOC_png          := 64
FUZZ_MALLOC_api          := 64
FUZZ_MALLOC_config       := 64
FUZZ_MALLOC_oip          := 64

.PHONY: fuzz fuzz-build
$(FUZZ_OBJ): $(FUZZ_BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_util.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

fuzz-build: $(FUZZERS:%=$(FUZZ_BUILD)/fuzz_%)

fuzz: fuzz-build
	@$(foreach f,$(FUZZERS),bash fuzz/run.sh $(FUZZ_BUILD) $(f) $(FUZZ_SECONDS) $(FUZZ_MAX_LEN_$(f)) $(FUZZ_MALLOC_$(f)) $(FUZZ_FLAGS) &&) true

# make soak: SOAK_SECONDS (default 1800) of mixed legitimate load at
# concurrency 64 with attacks mixed in, against the daemon on a loopback port
# (bench/soak.py, standard library only; not run by CI). Fails when a
# legitimate request fails, the daemon dies or hangs, or its RSS grows.
SOAK_PY ?= /usr/bin/python3
.PHONY: soak
soak: $(BUILD)/gmserve
	$(SOAK_PY) bench/soak.py $(BUILD)/gmserve

# make test-python: the PyTorch exporter (python/gmexport) on its zoo, each file
# checked by a reference interpreter of the graph format and by gmserve check.
.PHONY: test-python
test-python: $(BUILD)/gmserve
	cd python/tests && OMP_NUM_THREADS=1 GMSERVE=$(CURDIR)/$(BUILD)/gmserve $(TORCH_PY) -m unittest discover -s . -p 'test_*.py'

# make test-k8s: the manifests of k8s/ rendered with kubectl kustomize and
# checked, then the dev overlay run for real with podman kube play (root;
# tests/deploy/k8s.sh says what podman can and cannot stand in for).
.PHONY: test-k8s
test-k8s:
	@bash tests/deploy/k8s.sh

# make bench-peer: gmserve and bench/peer.py (FastAPI + uvicorn + PyTorch, our
# own) on the bundled models under wrk, interleaved, after checking that both
# compute the same (bench/bench_peer.py; ~6 min: PEER_ROUNDS, PEER_SECONDS).
.PHONY: bench-peer
bench-peer: $(BUILD)/gmserve
	$(TORCH_PY) bench/bench_peer.py $(BUILD)

# make profile-http: perf on the live daemon under wrk (VAE /encode at
# concurrency 64 by default; PROFILE_PATH, PROFILE_BODY, PROFILE_C), the CPU
# per request split into categories (bench/profile_http.py).
.PHONY: profile-http
profile-http: $(BUILD)/gmserve
	$(TORCH_PY) bench/profile_http.py $(BUILD)

# make bench-scaling: CPU, queue depth and latency of the live daemon as wrk
# steps the load (cheap GAN samples, then VAE log p with k=1000), one table
# per series (bench/scaling.py, standard library only; ~3 min, SCALING_SECONDS).
SCALING_PY ?= /usr/bin/python3
.PHONY: bench-scaling
bench-scaling: $(BUILD)/gmserve
	$(SCALING_PY) bench/scaling.py $(BUILD)

# make test-kserve: the KServe ServingRuntime and InferenceService of
# k8s/kserve rendered with kubectl kustomize and checked, and the runtime's
# command line run against build/gmserve over the Open Inference Protocol v2
# (tests/deploy/kserve.py; kubectl and python3-yaml, no cluster).
.PHONY: test-kserve
test-kserve: $(BUILD)/gmserve
	$(TORCH_PY) tests/deploy/kserve.py $(BUILD)/gmserve

# Every C file of the repository as .clang-format lays it out; `make format`
# rewrites them so.
C_FILES = $(shell git ls-files '*.c' '*.h')
.PHONY: format format-check
format:
	clang-format -i $(C_FILES)
format-check:
	@clang-format --dry-run --Werror $(C_FILES)
	@echo "format-check: $(words $(C_FILES)) files as .clang-format lays them out"
