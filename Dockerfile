# syntax=docker/dockerfile:1.7
#
# tcpspan: one OpenTelemetry span per TCP connection end, from eBPF.
#
#   docker compose up                      # builds this with the host's BTF (see docker-compose.yml)
#   docker buildx build --build-context btf=/sys/kernel/btf -t tcpspan:0.1.0 .
#
# Stages: bpf-build (the CO-RE object) and ts-build (the TypeScript) run in parallel;
# runtime gets their outputs and nothing else: no compiler, no npm dev dependencies.
#
# Running it needs CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_DAC_READ_SEARCH (opening other
# users' /proc/PID/environ for their service name) in the container's bounding set
# (docker-compose.yml and deploy/kubernetes/ grant exactly these). The image runs as
# uid 10001 and gets those four through file capabilities on the node binary, because
# neither Docker nor Kubernetes gives a non-root user ambient capabilities. Consequences:
#   - a container started without them fails at exec with "operation not permitted";
#   - `no-new-privileges` (Kubernetes: allowPrivilegeEscalation: false) disables file
#     capabilities, so it must stay off;
#   - CAP_SYS_ADMIN is not needed on Linux >= 5.8 (tested: all programs load and attach as
#     a non-root user with only these three). Runtimes too old to know CAP_BPF/CAP_PERFMON
#     cannot put them in the bounding set: there, run privileged (all capabilities).
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

# ---------------------------------------------------------------- kernel BTF for the build
# Why the BPF object needs BTF at build time, and where it comes from:
# bpf/Makefile generates vmlinux.h (the kernel's type definitions) from a BTF file. Thanks to
# CO-RE the object built against one kernel's BTF loads on any kernel tcpspan supports: libbpf
# rewrites every field offset against the *running* kernel's /sys/kernel/btf/vmlinux at load
# time. So any recent kernel's BTF will do; a type missing from it fails the build loudly.
# An image build cannot read the target host's /sys, so the BTF is handed in as a named build
# context (`--build-context btf=/sys/kernel/btf`; docker-compose.yml does this with
# additional_contexts). Without one, the builder's own /sys/kernel/btf/vmlinux is used when
# visible (BuildKit mounts sysfs in RUN steps on Linux). Rejected alternatives: building the
# object at container start would ship clang and LLVM (hundreds of MB) in the runtime image and
# need a writable root filesystem; a committed, pre-generated vmlinux.h is a multi-megabyte
# per-architecture generated file to keep in the repository.
# The default `btf` stage is just the base image (no /vmlinux in it): the fallback applies.
FROM ${NODE_IMAGE} AS btf

# ---------------------------------------------------------------- BPF object
FROM ${NODE_IMAGE} AS bpf-build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev bpftool make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build/bpf
COPY bpf/Makefile bpf/tcpspan.bpf.c bpf/tcpspan.h ./
RUN --mount=type=bind,from=btf,target=/btf \
    set -eu; \
    if [ -r /btf/vmlinux ]; then btf=/btf/vmlinux; \
    elif [ -r /sys/kernel/btf/vmlinux ]; then btf=/sys/kernel/btf/vmlinux; \
    else \
      echo "bpf build: no kernel BTF: build with --build-context btf=/sys/kernel/btf on a Linux host whose kernel has CONFIG_DEBUG_INFO_BTF=y" >&2; \
      exit 1; \
    fi; \
    echo "bpf build: CO-RE object against $btf"; \
    make -s VMLINUX_BTF="$btf"; \
    test -s .output/tcpspan.bpf.o

# ---------------------------------------------------------------- TypeScript
FROM ${NODE_IMAGE} AS ts-build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: koffi's native binary comes from its platform optional dependency
# (@koromix/koffi-linux-*), not from an install script; nothing else needs one at run time.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src/ src/
RUN node node_modules/typescript/bin/tsc -p tsconfig.json \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# ---------------------------------------------------------------- runtime
FROM ${NODE_IMAGE} AS runtime
# libbpf1: tcpspan loads the system's libbpf.so.1 (1.1 or newer) through koffi.
# setcap copies the node binary into this layer (about 120 MB unpacked): the price of running
# as a non-root user; libcap2-bin is only needed for that one command.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 libcap2-bin \
 && setcap cap_bpf,cap_perfmon,cap_net_admin,cap_dac_read_search+ep /usr/local/bin/node \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tcpspan \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tcpspan
WORKDIR /app
COPY --from=ts-build /app/package.json ./
COPY --from=ts-build /app/node_modules ./node_modules
COPY --from=ts-build /app/dist/src ./dist/src
# where src/capture/probes.ts looks for it: <root>/bpf/.output/tcpspan.bpf.o
COPY --from=bpf-build /build/bpf/.output/tcpspan.bpf.o ./bpf/.output/tcpspan.bpf.o
LABEL org.opencontainers.image.title="tcpspan" \
      org.opencontainers.image.description="One OpenTelemetry span per TCP connection, from eBPF tracepoints, exported over OTLP" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 10001:10001
# Configured exactly as on bare metal: OTEL_* and TCPSPAN_* environment variables.
# tcpspan handles SIGTERM itself (flushes open spans and exporters), so no init is needed.
ENTRYPOINT ["node", "dist/src/cli/main.js", "run"]
