# shellcheck shell=bash
# Debian packages through a private apt configuration (never /etc/apt):
# its own sources.list, lists and archives under $KM_CACHE/apt.

KM_APT="$KM_CACHE/apt"
KM_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# The Debian archive and its security archive, as this machine's apt
# sources name them (deb822 .sources files and one-line .list files).
# SANDSPEC_DEBIAN_MIRROR / SANDSPEC_DEBIAN_SECURITY_MIRROR override.
apt_mirrors() {
  local found
  found=$(
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
      awk '
        function flush() { if (uris != "" && types ~ /(^| )deb( |$)/) for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]; uris = ""; types = ""; nu = ns = 0 }
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*$/ { flush(); next }
        /^Types:/ { types = $0 }
        /^URIs:/ { uris = $0; nu = 0; for (i = 2; i <= NF; i++) u[++nu] = $i }
        /^Suites:/ { ns = 0; for (i = 2; i <= NF; i++) s[++ns] = $i }
        /^deb[[:space:]]/ { k = 2; if ($2 ~ /^\[/) { while ($k !~ /\]$/) k++; k++ } print $k, $(k + 1) }
        END { flush() }'
  ) || true
  KM_MIRROR=${SANDSPEC_DEBIAN_MIRROR:-$(awk '$2 !~ /-security$/ && $1 ~ /\/debian\/?$/ { print $1; exit }' <<<"$found")}
  KM_SECURITY_MIRROR=${SANDSPEC_DEBIAN_SECURITY_MIRROR:-$(awk '$2 ~ /-security$/ { print $1; exit }' <<<"$found")}
  [[ -n $KM_MIRROR ]] || die "failed to find the Debian archive: no 'deb' source for a .../debian URI in /etc/apt/sources.list(.d); set SANDSPEC_DEBIAN_MIRROR"
  KM_MIRROR=${KM_MIRROR%/}
  KM_SECURITY_MIRROR=${KM_SECURITY_MIRROR:-$KM_MIRROR-security}
  KM_SECURITY_MIRROR=${KM_SECURITY_MIRROR%/}
}

# Options pointing apt at a private configuration directory $1.
apt_private_opts() {
  local d=$1
  printf '%s\n' \
    -o "Dir::Etc::sourcelist=$d/sources.list" -o Dir::Etc::sourceparts=- \
    -o "Dir::State::Lists=$d/lists" -o "Dir::Cache::archives=$d/archives" \
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
    -o Acquire::Languages=none -o APT::Architectures=amd64 \
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false \
    -o Acquire::Retries=3 -o APT::Sandbox::User=root
}

# Writes $1/sources.list for the suites $2..., and runs `apt-get update`.
apt_private_update() {
  local d=$1 suite mirror
  shift
  mkdir -p "$d/lists/partial" "$d/archives/partial"
  : >"$d/sources.list.new"
  for suite in "$@"; do
    mirror=$KM_MIRROR
    [[ $suite == *-security ]] && mirror=$KM_SECURITY_MIRROR
    printf 'deb [signed-by=%s] %s %s main\n' "$KM_KEYRING" "$mirror" "$suite" >>"$d/sources.list.new"
  done
  mv "$d/sources.list.new" "$d/sources.list"
  local opts out
  mapfile -t opts < <(apt_private_opts "$d")
  if ! out=$(apt-get "${opts[@]}" update 2>&1); then
    printf '%s\n' "$out" | tail -n 20 >&2
    log "failed to update the private apt lists in $d (suites: $*)"
    return 1
  fi
  # apt-get update exits 0 when a suite's index could not be fetched.
  if grep -E '^(E|W): (Failed to fetch|The repository|.*does not have a Release file)' <<<"$out" >&2; then
    log "failed to update the private apt lists in $d: the archive did not serve every suite (suites: $*)"
    return 1
  fi
}

# Updates the kernels' private apt lists for every suite the lock names.
# Sets KM_ARCHIVE to "up" or "down" (then only cached payloads can be used).
apt_kernels_update() {
  apt_mirrors
  local suites
  mapfile -t suites < <(lock_rows "$KM_LOCK" | cut -f2 | sort -u)
  log "updating private apt lists for: ${suites[*]} (archive $KM_MIRROR, security $KM_SECURITY_MIRROR)"
  if apt_private_update "$KM_APT" "${suites[@]}"; then
    KM_ARCHIVE=up
  else
    # shellcheck disable=SC2034 # read by the scripts that source this file
    KM_ARCHIVE=down
    log "the archive is unreachable: pins cannot be re-checked; only cached kernels can boot"
  fi
}

# Prints "package version sha256" for every kernel and busybox package the
# suite $1 offers (read once per update, then from $KM_APT/index.<suite>).
apt_suite_index() {
  local cached="$KM_APT/index.$1"
  if [[ ! -s $cached || $cached -ot $KM_APT/sources.list ]]; then
    apt_suite_index_uncached "$1" | awk '$1 ~ /^(linux-(image|binary)-|busybox)/' >"$cached.new" &&
      mv "$cached.new" "$cached"
  fi
  cat "$cached"
}

apt_suite_index_uncached() {
  local opts files f
  mapfile -t opts < <(apt_private_opts "$KM_APT")
  # shellcheck disable=SC2016 # $(FILENAME) is apt's format syntax, not the shell's
  mapfile -t files < <(apt-get "${opts[@]}" indextargets --format '$(FILENAME)' "Codename: $1" "Identifier: Packages")
  [[ ${#files[@]} -gt 0 ]] || die "failed to read the package index of suite $1: apt has none (is it in the lock file?)"
  for f in "${files[@]}"; do
    [[ -e $f ]] || continue
    /usr/lib/apt/apt-helper cat-file "$f"
  done | awk '/^Package: /{ p = $2 } /^Version: /{ v = $2 } /^SHA256: /{ print p, v, $2 }'
}

# Downloads PKG=VER from the private lists into $3 and checks its SHA-256
# against $4. Prints the path of the .deb.
apt_download_checked() {
  local pkg=$1 ver=$2 dir=$3 sha=$4 opts out deb got
  mapfile -t opts < <(apt_private_opts "$KM_APT")
  mkdir -p "$dir"
  rm -f "$dir"/*.deb
  if ! out=$(cd "$dir" && apt-get "${opts[@]}" download "$pkg=$ver" 2>&1); then
    printf '%s\n' "$out" | tail -n 5 >&2
    log "failed to download $pkg=$ver"
    return 1
  fi
  deb=$(find "$dir" -maxdepth 1 -name '*.deb' | head -n 1)
  [[ -n $deb ]] || { log "failed to download $pkg=$ver: apt-get wrote no .deb"; return 1; }
  got=$(sha256sum "$deb" | cut -d' ' -f1)
  if [[ $got != "$sha" ]]; then
    log "failed to verify $pkg=$ver: SHA-256 is $got, the lock says $sha"
    rm -f "$deb"
    return 1
  fi
  printf '%s\n' "$deb"
}

# Checks that suite $1 offers $2=$3; on a miss, says what it offers instead.
apt_pin_offered() {
  local suite=$1 pkg=$2 ver=$3 index
  index=$(apt_suite_index "$suite")
  if awk -v p="$pkg" -v v="$ver" '$1 == p && $2 == v { f = 1 } END { exit !f }' <<<"$index"; then
    return 0
  fi
  local series others
  series=$(kernel_series_regex "$pkg")
  others=$(awk -v re="$series" '$1 ~ re { print $1 "=" $2 }' <<<"$index" | sort -V | tail -n 3 | tr '\n' ' ')
  log "pin $pkg=$ver is no longer offered by $suite${others:+ (it offers: $others)}; run ci/kernel-matrix --refresh to move the pin to the newest kernel of the same series"
  return 1
}

# A regex for packages of the same kernel series and flavour as $1:
# linux-image-6.12.118+deb13-cloud-amd64 -> ^linux-image-6\.12\.[^-]*-cloud-amd64$
# linux-image-6.1.0-50-cloud-amd64      -> ^linux-image-6\.1\.0-[0-9]+-cloud-amd64$
kernel_series_regex() {
  local pkg=$1 kind rest mm flavour
  if [[ $pkg == busybox-static ]]; then printf '^busybox-static$\n'; return; fi
  kind=${pkg%%-[0-9]*}                                  # linux-image / linux-binary
  rest=${pkg#"$kind"-}                                  # 6.12.118+deb13-cloud-amd64
  mm=$(sed -E 's/^([0-9]+\.[0-9]+).*/\1/' <<<"$rest")   # 6.12
  flavour=$(sed -E 's/^[0-9][^-]*(-[0-9]+)?-//' <<<"$rest") # cloud-amd64
  if [[ $rest =~ ^[0-9]+\.[0-9]+\.0-[0-9]+- ]]; then
    printf '^%s-%s\\.0-[0-9]+-%s$\n' "$kind" "${mm//./\\.}" "$flavour"
  else
    printf '^%s-%s\\.[0-9]+[^-]*-%s$\n' "$kind" "${mm//./\\.}" "$flavour"
  fi
}

# Prints "package version sha256" of the newest package of the same series
# as $2 in suite $1 (the kernel's Landlock ABI follows its upstream series).
apt_newest_of_series() {
  local suite=$1 pkg=$2 re
  re=$(kernel_series_regex "$pkg")
  apt_suite_index "$suite" | awk -v re="$re" '$1 ~ re' |
    while read -r p v s; do printf '%s %s %s\n' "$v" "$p" "$s"; done |
    sort -V | tail -n 1 | awk '{ print $2, $1, $3 }'
}
