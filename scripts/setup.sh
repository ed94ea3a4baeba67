#!/usr/bin/env bash
# Installs what building barlow needs when it is missing, and prepares the patched dfdx:
# 1. a stable Rust toolchain (via rustup);
# 2. dfdx 0.13.0 from crates.io with `patches/dfdx+0.13.0.patch` applied, in the git-ignored
#    folder `target/patch/dfdx-0.13.0` that the workspace's `[patch.crates-io]` points at (the
#    `patch-crate` convention). The patch makes public what the trainer's custom ops need
#    (a tensor's storage, tensors from buffers, removing a gradient, the CUDA device and cuBLAS
#    handle). Until this folder exists every cargo command in the workspace fails with "failed
#    to load source for dependency `dfdx`": run this script (every script here sources it);
# 3. cmake and nasm (Debian's packages), which the `decode` crate's libjpeg-turbo decoder needs to
#    build libjpeg-turbo from source with its SIMD (without nasm the build fails rather than
#    giving a slow libjpeg-turbo). Build with `--no-default-features` on `decode` to go without.
# Sourced by the other scripts (it exports PATH); also runnable on its own. Idempotent and fast
# once done; redone when the patch file changes.
set -euo pipefail
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing a stable Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

barlow_build_tools() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  case "$(uname -m)" in x86_64|i?86) command -v nasm >/dev/null 2>&1 || missing+=(nasm) ;; esac
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} (libjpeg-turbo's build) with apt-get" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null) \
      || echo "setup: could not install ${missing[*]}: the decode crate's libjpeg-turbo backend will not build (install them, or build decode with --no-default-features)" >&2
  else
    echo "setup: ${missing[*]} missing and cannot be installed here (not root or no apt-get): install them for the decode crate's libjpeg-turbo backend" >&2
  fi
}
barlow_build_tools

barlow_patch_dfdx() {
  local root crate_sha patch dest stamp want crate
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  crate_sha=c6dbcb8a7363d8b434ca20bd3808ab9f6ee77e6916ca1d511f8e3c725d0b340e # Cargo.lock of dfdx 0.13.0
  patch=$root/patches/dfdx+0.13.0.patch
  dest=$root/target/patch/dfdx-0.13.0
  stamp=$dest/.barlow-patch
  want=$(sha256sum "$patch" | cut -d' ' -f1)
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  find_crate() { ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/dfdx-0.13.0.crate 2>/dev/null | head -n1 || true; }
  crate=$(find_crate)
  if [ -z "$crate" ]; then
    echo "setup: downloading dfdx 0.13.0 from crates.io" >&2
    cargo fetch --quiet --manifest-path "$root/patches/fetch/Cargo.toml" >&2
    crate=$(find_crate)
  fi
  if [ -z "$crate" ] || [ "$(sha256sum "$crate" | cut -d' ' -f1)" != "$crate_sha" ]; then
    echo "setup: dfdx-0.13.0.crate is missing or does not have the checksum in Cargo.lock ($crate)" >&2
    return 1
  fi
  rm -rf "$dest" && mkdir -p "$(dirname "$dest")"
  tar -xzf "$crate" -C "$(dirname "$dest")"
  if ! (cd "$dest" && patch -p1 --batch --quiet < "$patch"); then
    echo "setup: $patch does not apply to dfdx 0.13.0" >&2
    return 1
  fi
  echo "$want" > "$stamp"
  echo "setup: dfdx 0.13.0 patched in $dest" >&2
}
barlow_patch_dfdx
