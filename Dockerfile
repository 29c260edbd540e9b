# dispatchd in a small image: built in rust:1-bookworm, run on debian:bookworm-slim as a
# non-root user, its data directory a volume, its health checked on /healthz by
# `dispatchd healthcheck` (the slim image has no curl).
#
#   docker build -t dispatchd .
#   docker run -d -p 8080:8080 -v dispatch-data:/var/lib/dispatch \
#       -e DISPATCH_ADMIN_TOKEN -e DISPATCH_TOKEN_SECRET -e DISPATCH_WEBHOOK_SECRET_SIM \
#       -e DISPATCH_SMS_SINK=https://sms.example/send -e DISPATCH_METRICS_TOKEN dispatchd
#
# Secrets come from the environment only (SECURITY.md); settings from a file mounted at
# /etc/dispatch/dispatch.toml and `--config` (dispatch.toml.example lists every key):
#   docker run ... -v ./dispatch.toml:/etc/dispatch/dispatch.toml:ro dispatchd \
#       serve --config /etc/dispatch/dispatch.toml --listen 0.0.0.0:8080 --data-dir /var/lib/dispatch

FROM rust:1-bookworm AS builder
WORKDIR /src
# The whole workspace (.dockerignore leaves out target/, data directories and .git):
# every member's manifest is needed to resolve it.
COPY . .
RUN cargo build --release --locked -p dispatch-server --bin dispatchd \
    && cp target/release/dispatchd /usr/local/bin/dispatchd

FROM debian:bookworm-slim
# A fixed uid/gid, so a volume's owner is the same across rebuilds. The data directory is
# the user's only (dispatchd keeps it 0700 and its files 0600).
RUN groupadd --system --gid 10001 dispatch \
    && useradd --system --uid 10001 --gid dispatch --home-dir /var/lib/dispatch --shell /usr/sbin/nologin dispatch \
    && mkdir -p /var/lib/dispatch /etc/dispatch \
    && chown dispatch:dispatch /var/lib/dispatch \
    && chmod 0700 /var/lib/dispatch
COPY --from=builder /usr/local/bin/dispatchd /usr/local/bin/dispatchd
COPY dispatch.toml.example /etc/dispatch/dispatch.toml.example
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/dispatch/
USER dispatch:dispatch
VOLUME ["/var/lib/dispatch"]
EXPOSE 8080
# Plain http on loopback: with `[server] tls_cert`/`tls_key` set the listener speaks TLS only,
# so terminate TLS in front of the container instead, or override this check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["dispatchd", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["dispatchd"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/dispatch"]
