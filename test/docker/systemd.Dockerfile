# The units tunvs ships (packaging/systemd/) under a real systemd, for test/docker/compose.test.ts:
# the docker lab's tunvs image (tunvs at /usr/local/bin/tunvs, where the units expect it) with
# Debian's systemd as PID 1. tunvs-watchdog is enabled as the units say (WantedBy tunvs), tunvs
# itself is started by the test once its config is in place.
FROM tunvs:lab
RUN apt-get update \
 && apt-get install -y --no-install-recommends systemd \
 && rm -rf /var/lib/apt/lists/*
COPY packaging/systemd/tunvs.service packaging/systemd/tunvs-watchdog.service /etc/systemd/system/
RUN systemctl enable tunvs-watchdog.service \
 && systemctl mask getty.target systemd-logind.service systemd-udevd.service systemd-resolved.service
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/lib/systemd/systemd"]
