# A custom trainer image: the miniseries trainer image plus nanochat (karpathy/nanochat, MIT) at a
# pinned commit, so a ScalingSweep can train with nanochat's own scripts/base_train.py through the
# adapter (docs/trainer-contract.md, "nanochat's base_train as a trainer"):
#
#   spec:
#     trainer:
#       image: ghcr.io/miniseries/trainer-nanochat:0.1.0
#       command: [python, -m, miniseries_trainer.adapters.nanochat, --nanochat-dir, /opt/nanochat]
#       contractVersion: 1
#
# It layers on the trainer image (torch and our packages are reused as they are): what it adds is a
# C compiler and Python's headers (base_train always runs torch.compile: inductor's C++ kernels on a
# CPU, triton's launcher on a GPU both build with them), the `nanochat` extra's wheels, and
# nanochat's files under /opt/nanochat.
#
# Build from the repository root, after the trainer image (scripts/build-images.sh nanochat does both):
#   docker build -f trainer_image/nanochat.Dockerfile -t ghcr.io/miniseries/trainer-nanochat:0.1.0 .
# fetches nanochat at NANOCHAT_COMMIT from GitHub. Offline, from a checkout already here:
#   ... --build-arg NANOCHAT_SOURCE=context --build-context nanochat=../shared/peers/nanochat
ARG TRAINER_IMAGE=ghcr.io/miniseries/trainer:0.1.0
# github: download NANOCHAT_COMMIT's tree; context: copy the `nanochat` build context
ARG NANOCHAT_SOURCE=github

FROM ${TRAINER_IMAGE} AS deps
USER root
# Set only by builds behind a TLS-inspecting proxy (scripts/build-images.sh): the CA bundle pip uses.
ARG PIP_CERT
RUN apt-get update \
    && apt-get install --yes --no-install-recommends g++ python3-dev \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
# The extra's own wheels (rustbpe, kernels, wandb, ...); the rest of the list is installed already,
# and pip check proves nothing clashes with the trainer's torch.
COPY scripts/pyproject_requirements.py /src/pyproject_requirements.py
COPY trainer_image/pyproject.toml /src/trainer_image/pyproject.toml
RUN python3 /src/pyproject_requirements.py "/src/trainer_image/pyproject.toml[nanochat]" > /src/requirements.txt \
    && pip install -r /src/requirements.txt && pip check && rm -rf /src

FROM deps AS nanochat-github
# 92d63d4 ("clean up fragile code", 2026-07-03): the commit the adapter is tested against.
ARG NANOCHAT_COMMIT=92d63d4e8bb4df75c3b71618f31ddde2378b2bcd
# GitHub's archive of that commit (a commit id names exactly one tree), unpacked with Python's own
# tarfile: the image has python, not git or curl.
RUN python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], '/tmp/nanochat.tar.gz')" \
        "https://github.com/karpathy/nanochat/archive/${NANOCHAT_COMMIT}.tar.gz" \
    && python3 -m tarfile -e /tmp/nanochat.tar.gz /tmp/nanochat \
    && mv "/tmp/nanochat/nanochat-${NANOCHAT_COMMIT}" /opt/nanochat && rm -rf /tmp/nanochat /tmp/nanochat.tar.gz

FROM deps AS nanochat-context
COPY --from=nanochat . /opt/nanochat

FROM nanochat-${NANOCHAT_SOURCE}
# Readable by every uid (a cluster may run the pod as another one); nothing writes there: the adapter
# gives nanochat a NANOCHAT_BASE_DIR under /tmp, and PYTHONDONTWRITEBYTECODE is set.
RUN test -f /opt/nanochat/scripts/base_train.py && chmod -R a+rX,go-w /opt/nanochat
USER 1000
ENTRYPOINT ["python", "-m", "miniseries_trainer.adapters.nanochat", "--nanochat-dir", "/opt/nanochat"]
CMD ["--help"]
