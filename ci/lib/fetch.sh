# shellcheck shell=bash
# Kernel images and busybox, fetched once, verified, and cached by the
# SHA-256 of their .deb under $KM_CACHE.

# Prints the cached path of the file $5 extracted from suite $1's package
# $2=$3 whose .deb has SHA-256 $4. Fetches it when the cache lacks it.
# $5 is "vmlinuz" (both kernel layouts) or "busybox".
cached_payload() {
  local suite=$1 pkg=$2 ver=$3 sha=$4 what=$5
  local dir="$KM_CACHE/$what/${sha:0:16}" out
  out="$dir/$what"
  # A pin the archive stopped offering fails even when it is cached: CI on
  # a new machine would hit it, so say it now.
  if [[ $KM_ARCHIVE == up ]]; then
    apt_pin_offered "$suite" "$pkg" "$ver" || return 1
  fi
  if [[ -s $out && -e $dir/verified && $(cat "$dir/verified") == "$pkg $ver $sha" ]]; then
    printf '%s\n' "$out"
    return 0
  fi
  if [[ $KM_ARCHIVE != up ]]; then
    log "failed to fetch $pkg=$ver: not cached in $dir and the archive is unreachable"
    return 1
  fi
  local tmp deb found
  tmp=$(mktemp -d "$KM_CACHE/.fetch.XXXXXX")
  log "fetching $pkg=$ver from $suite"
  if ! deb=$(apt_download_checked "$pkg" "$ver" "$tmp/deb" "$sha"); then
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$tmp/x"
  case $what in
    # pre-6.19: linux-image-* carries /boot/vmlinuz-<ver>; 6.19+: linux-binary-*
    # carries /usr/lib/modules/<ver>/vmlinuz (linux-image-* is then empty).
    vmlinuz) dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './boot/vmlinuz-*' './usr/lib/modules/*/vmlinuz' 2>/dev/null || true
      found=$(find "$tmp/x/boot" "$tmp/x/usr/lib/modules" -type f \( -name 'vmlinuz-*' -o -name vmlinuz \) 2>/dev/null | head -n 1) ;;
    busybox) dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards '*bin/busybox' 2>/dev/null || true
      found=$(find "$tmp/x" -type f -path '*bin/busybox' | head -n 1)
      if [[ -n $found ]] && ! "$found" true; then
        log "failed to use busybox from $pkg=$ver: $found does not run here"
        found=""
      fi ;;
  esac
  if [[ -z $found ]]; then
    log "failed to extract $what from $pkg=$ver: the package has neither /boot/vmlinuz-* nor /usr/lib/modules/*/vmlinuz (a metapackage? 6.19+ kernels are in linux-binary-*)"
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$dir"
  install -m 0755 "$found" "$out.new" && mv "$out.new" "$out"
  printf '%s %s %s\n' "$pkg" "$ver" "$sha" >"$dir/verified"
  rm -rf "$tmp"
  printf '%s\n' "$out"
}
