#!/usr/bin/env bash
# Makes a local stand-in for docker.io/library/debian:bookworm-slim when no
# registry can be reached: debootstrap minbase, then
# trimmed like the official slim image (no apt caches or lists; docs, man
# pages and locales excluded from this and later package installs).
# Reuses the image when it already exists.
set -euo pipefail
image=docker.io/library/debian:bookworm-slim
if podman image exists "$image"; then echo "base image: $image exists"; exit 0; fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "base image: debootstrap bookworm (about a minute) ..."
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian > "$root.log" 2>&1 ||
    { cat "$root.log"; exit 1; }
cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Binary::apt::APT::Keep-Downloaded-Packages "false";
CFG
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
tar -C "$root" -c . | podman import - "$image" > /dev/null 2>&1
rm -f "$root.log"
echo "base image: $(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')"
