# nginx in front of gmserve replicas (docker/compose.scale.yaml), from the
# same base as gmserve with Debian's nginx and docker/nginx.conf; the
# entrypoint reloads nginx when a replica returns at a new address.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /dev/stderr /var/log/nginx/error.log
COPY docker/nginx.conf /etc/nginx/nginx.conf
COPY docker/nginx-entrypoint.sh /usr/local/bin/nginx-entrypoint
EXPOSE 8080
STOPSIGNAL SIGQUIT
CMD ["nginx-entrypoint"]
