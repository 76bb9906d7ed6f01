# shellcheck shell=bash
# The guest image: static test binaries (musl, or glibc +crt-static as a
# fallback), busybox and ci/guest/init, packed into a newc initramfs.

# Sets KM_TARGET and its build environment KM_BUILD_ENV for kind $1:
# "musl" (preferred) or "gnu" (glibc with +crt-static).
guest_target() {
  # Baseline x86-64: QEMU's TCG CPU model lacks newer instruction sets.
  local flags="-C target-cpu=x86-64"
  # Optimised, without debug info: under TCG unoptimised code runs ~50x
  # slower than natively and the matrix would not fit its time budget.
  # These apply to the target's units only: host build scripts and proc
  # macros use build-override, so the host's own build is not disturbed.
  KM_BUILD_ENV=(CARGO_PROFILE_DEV_OPT_LEVEL=2 CARGO_PROFILE_DEV_DEBUG=0)
  if [[ $1 == musl ]]; then
    KM_TARGET=x86_64-unknown-linux-musl
    # a dependency's build script compiles C (cc-rs) for the target
    KM_BUILD_ENV+=(CC_x86_64_unknown_linux_musl=musl-gcc "RUSTFLAGS=$flags")
  else
    KM_TARGET=x86_64-unknown-linux-gnu
    KM_BUILD_ENV+=("RUSTFLAGS=$flags -C target-feature=+crt-static")
  fi
}

musl_usable() {
  command -v musl-gcc >/dev/null || { log "musl-gcc is missing"; return 1; }
  rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl && return 0
  rustup target add x86_64-unknown-linux-musl >&2 || { log "failed to add the musl target with rustup"; return 1; }
}

# Builds test executables (written as "kind:name<TAB>path" lines to $1) and
# the sandspec binaries for kind $2; returns non-zero if cargo fails.
# cargo's messages go to the file $3.
guest_build_for() {
  local list=$1 json rc=0 err=$3
  guest_target "$2"
  json=$(mktemp)
  log "building static test binaries for $KM_TARGET (cargo's log: $err)"
  (cd "$KM_ROOT" && env "${KM_BUILD_ENV[@]}" cargo test --no-run --target "$KM_TARGET" --message-format=json-render-diagnostics >"$json" 2>"$err") || rc=$?
  if [[ $rc -eq 0 ]]; then
    # Every test executable cargo produced: lib and bin unit tests, integration tests.
    jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test)
           | "\(.target.kind[0]):\(.target.name)\t\(.executable)"' "$json" | sort -u >"$list"
    (cd "$KM_ROOT" && env "${KM_BUILD_ENV[@]}" cargo build --bins --target "$KM_TARGET") >>"$err" 2>&1 || rc=$?
  fi
  rm -f "$json"
  return "$rc"
}

# Builds the guest's binaries: musl if the code builds there, else glibc
# with +crt-static (both static, both baseline x86-64).
guest_build() {
  local list=$1
  local log_musl="$KM_OUT/build-musl.log" log_gnu="$KM_OUT/build-gnu.log"
  if musl_usable && guest_build_for "$list" musl "$log_musl"; then
    :
  else
    local first=""
    [[ -s $log_musl ]] && first=$(grep -m 1 -A 1 '^error' "$log_musl" | tr -s ' \n' ' ')
    log "the musl build is unavailable or failed${first:+ ($first; log: $log_musl)}: falling back to glibc +crt-static"
    if ! guest_build_for "$list" gnu "$log_gnu"; then
      grep -A 6 '^error' "$log_gnu" | head -n 40 >&2
      die "failed to build the test binaries for $KM_TARGET (log: $log_gnu)"
    fi
  fi
  [[ -s $list ]] || die "failed to find test executables in cargo's output"
}

# Copies $1 into the image tree $2 at the same absolute path, stripped
# (panic messages keep file:line; a smaller image unpacks faster).
stage_binary() {
  local src=$1 stage=$2
  mkdir -p "$stage$(dirname "$src")"
  strip --strip-all -o "$stage$src" "$src" 2>/dev/null || cp "$src" "$stage$src"
  chmod 0755 "$stage$src"
}

# Builds the initramfs $2 from the test list $1 and the busybox binary $3.
guest_initramfs() {
  local list=$1 out=$2 busybox=$3 stage name path bin
  stage=$(mktemp -d)
  mkdir -p "$stage"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,proc,sys,dev,tmp,root,sandspec}
  # The merged-/usr layout of a Debian host, which the corpus assumes: a
  # policy allowing exec under /usr runs /bin/true, because Landlock checks
  # the file the path resolves to (/usr/bin/busybox here).
  local d
  for d in bin sbin lib lib64; do ln -s "usr/$d" "$stage/$d"; done
  install -m 0755 "$busybox" "$stage/usr/bin/busybox"
  install -m 0755 "$KM_HERE/guest/init" "$stage/init"
  install -m 0755 "$KM_HERE/guest/runuser" "$stage/usr/sbin/runuser"
  printf 'sandspec-guest\n' >"$stage/etc/hostname"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$stage/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
  printf '/bin/sh\n' >"$stage/etc/shells"
  mknod "$stage/dev/console" c 5 1 2>/dev/null || true
  : >"$stage/sandspec/tests"
  local users
  while IFS=$'\t' read -r name path; do
    [[ $name =~ $KM_TESTS ]] || continue
    [[ -n $KM_HOST_ONLY && $name =~ $KM_HOST_ONLY ]] && continue
    stage_binary "$path" "$stage"
    users=root
    [[ $name =~ $KM_AS_NOBODY ]] && users="root nobody"
    printf '%s\t%s\t%s\t%s\n' "$name" "$path" "$KM_ROOT" "$users" >>"$stage/sandspec/tests"
  done <"$list"
  [[ -s $stage/sandspec/tests ]] || die "no test binary matches --tests '$KM_TESTS' outside --host-only '$KM_HOST_ONLY'"
  cp "$stage/sandspec/tests" "$KM_OUT/guest-tests.list"
  local target_dir
  target_dir=$(cd "$KM_ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory) ||
    die "failed to read cargo's target directory"
  for bin in sandspec sandspec-probe; do
    path="$target_dir/$KM_TARGET/debug/$bin"
    [[ -x $path ]] || die "failed to find $path after building it"
    stage_binary "$path" "$stage"
  done
  printf '%s\n' "$target_dir/$KM_TARGET/debug/sandspec" >"$stage/sandspec/sandspec-path"
  # Test data read at run time, at the paths the binaries were built with.
  for d in conformance tests; do
    if [[ -d $KM_ROOT/$d ]]; then
      mkdir -p "$stage$KM_ROOT"
      cp -a "$KM_ROOT/$d" "$stage$KM_ROOT/"
    fi
  done
  chmod -R a+rX "$stage"
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$out.new" ||
    die "failed to pack the initramfs"
  mv "$out.new" "$out"
  rm -rf "$stage"
}
