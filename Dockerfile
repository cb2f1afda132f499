# swarmcoord container image.
#   podman build --format docker -t swarmcoord .     (docker build -t swarmcoord . works the same)
# --format docker matters for podman/buildah: the default OCI format has no HEALTHCHECK and
# drops it with a warning. deploy/image-test.sh builds and smoke-tests this file.
#
# Configuration, in increasing precedence (see config/swarmcoord.toml):
#   the file /etc/swarmcoord/swarmcoord.toml (shipped here; mount your own over it),
#   environment SWARMCOORD_<SECTION>_<KEY>=value, then --set section.key=value arguments.
# The image sets SWARMCOORD_ADMIN_LISTEN=0.0.0.0:9100 so Prometheus can scrape /metrics from
# the container network; being an environment variable it wins over admin.listen in a
# mounted file, so change the admin address with -e SWARMCOORD_ADMIN_LISTEN=... instead.

# ---- build stage: the compiler and the -dev packages of deploy/install-deps.sh (build_pkgs)
FROM debian:bookworm-slim AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      g++ cmake ninja-build ccache pkg-config \
      libboost1.81-dev nlohmann-json3-dev libspdlog-dev libfmt-dev catch2 prometheus-cpp-dev \
      libtomlplusplus-dev libcli11-dev libssl-dev libmaxminddb-dev libsimdjson-dev libjwt-dev libjemalloc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore lets in only what the daemon's build reads (CMakeLists.txt, protocol/,
# server/, config/swarmcoord.toml), so edits to tests or benches keep this layer cached.
COPY . .
# ccache has nothing to hit in a fresh build layer: bypass it. The binary is stripped (half
# the size); the shipped config is checked against the binary that will read it; the
# object files go (they would only weigh down the build cache, ~400 MB per source change).
RUN CCACHE_DISABLE=1 cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DSWARMCOORD_TESTS=OFF -DSWARMCOORD_BENCH=OFF \
 && CCACHE_DISABLE=1 cmake --build build --target swarmcoord \
 && strip --strip-unneeded -o /swarmcoord build/swarmcoord \
 && /swarmcoord --version \
 && /swarmcoord --config config/swarmcoord.toml --print-config >/dev/null \
 && rm -rf build

# ---- runtime stage: the shared libraries of `ldd build/swarmcoord`, nothing else
#   libssl.so.3 libcrypto.so.3 -> libssl3        libspdlog.so.1.10 -> libspdlog1.10
#   libfmt.so.9 -> libfmt9                       libprometheus-cpp-core.so.1.0 -> libprometheus-cpp-core1.0
#   libtomlplusplus.so.3 -> libtomlplusplus3     libmaxminddb.so.0 -> libmaxminddb0
#   libsimdjson.so.14 -> libsimdjson14           libjwt.so.0 -> libjwt0 (with libjansson4)
#   libjemalloc.so.2 -> libjemalloc2
#   libstdc++.so.6 -> libstdc++6 (libgcc-s1, libc6: in the base)
# No GeoIP database is shipped: mount one and point locality.geoip_db at it, e.g.
#   -v ./GeoLite2-Country.mmdb:/var/lib/swarmcoord/country.mmdb:ro
#   -e SWARMCOORD_LOCALITY_GEOIP_DB=/var/lib/swarmcoord/country.mmdb
FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libssl3 libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 libtomlplusplus3 libmaxminddb0 \
      libsimdjson14 libjwt0 libjemalloc2 libstdc++6 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log \
 && useradd --uid 10001 --user-group --no-log-init --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin swarmcoord
COPY --from=build /swarmcoord /usr/local/bin/swarmcoord
COPY config/swarmcoord.toml /etc/swarmcoord/swarmcoord.toml
# Fails the build here, not at `run`, if a shared library is missing.
RUN ["/usr/local/bin/swarmcoord", "--version"]

ENV SWARMCOORD_ADMIN_LISTEN=0.0.0.0:9100
EXPOSE 8000 9100
# Numeric, so that Kubernetes' runAsNonRoot can verify it; 10001 is the user swarmcoord.
USER 10001:10001
STOPSIGNAL SIGTERM
# The probe needs no extra package: bash (essential in Debian, so in every Debian base) opens
# the TCP connection itself through /dev/tcp and checks the status line of GET /healthz.
# curl would add ~5 MB of libraries for the same, and the daemon has no probe mode of its own.
# It speaks plain HTTP to 127.0.0.1:8000: change it if server.listen moves or TLS is on.
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000 && printf 'GET /healthz HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && IFS= read -r -t 2 status <&3 && [[ $status == 'HTTP/1.'?' 200 '* ]]"]
ENTRYPOINT ["/usr/local/bin/swarmcoord"]
CMD ["--config", "/etc/swarmcoord/swarmcoord.toml"]
