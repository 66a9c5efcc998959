# tunvs images for the docker-compose lab (docker-compose.yml). Multi-stage: the build stage
# has the compilers (node-gyp for the TUN addon, clang + libbpf for the eBPF TOA reader); the
# runtime stages get only what runs.
#
#   target tunvs  the load balancer (tunvs + keepalived), the real servers (demo server under
#                 the eBPF reader) and the client (curl, autocannon): one image, three roles
#   target redis  the session store of the pair
#
# Base: the official node:20-bookworm-slim. Without Docker Hub, docker/base-image.sh builds a
# local stand-in under the same tag.

# (first: a classic builder builds every stage before the target, and redis needs none)
FROM node:20-bookworm-slim AS redis
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER redis
CMD ["redis-server", "--bind", "0.0.0.0", "--save", "", "--appendonly", "no", "--protected-mode", "no"]

FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 clang libbpf-dev linux-libc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY native ./native
# npm ci runs the install script: it builds native/ and native/rs/ (addons and BPF object)
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY workers ./workers
COPY bin ./bin
COPY bench ./bench
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS tunvs
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 keepalived libbpf1 curl ca-certificates procps \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/tunvs
COPY --from=build /src/package.json ./
COPY --from=build /src/bin ./bin
COPY --from=build /src/dist ./dist
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/native/build/Release/tunvs_native.node /src/native/build/Release/tunvs-ha-check ./native/build/Release/
COPY --from=build /src/native/rs/build/Release/tunvs_rs.node ./native/rs/build/Release/
COPY --from=build /src/native/rs/build/toa_reader.bpf.o /src/native/rs/build/ipip_decap.bpf.o ./native/rs/build/
RUN ln -s /opt/tunvs/bin/tunvs /usr/local/bin/tunvs \
 && ln -s /opt/tunvs/native/build/Release/tunvs-ha-check /usr/local/bin/tunvs-ha-check \
 && ln -s /opt/tunvs/node_modules/.bin/autocannon /usr/local/bin/autocannon
ENTRYPOINT ["node", "/opt/tunvs/dist/src/lab/compose_node.js"]
