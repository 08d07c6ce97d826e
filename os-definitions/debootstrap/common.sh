# Shared by the debootstrap OS scripts (sourced, bash).  Written for Corral;
# follows the OS interface of spec/os-api.md.  Configuration, lowest priority
# first: built-in defaults, the node's defaults file
# $CORRAL_ROOT/etc/corral/instance-debootstrap/defaults (shell assignments:
# MIRROR, SUITE, ARCH, EXTRA_PKGS, COMPONENTS, MINIMAL, PROXY, CACHE_DIR,
# USE_CACHE, CACHE_MAX_AGE, CUSTOMIZE_DIR, MIN_DISK_MB), then OSP_* parameters.

ROOT_PREFIX="${CORRAL_ROOT:-/}"
ROOT_PREFIX="${ROOT_PREFIX%/}"
CONF_DIR="$ROOT_PREFIX/etc/corral/instance-debootstrap"

log() { echo "debootstrap-os: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Prints the first `deb` URI of the machine's APT sources (one-line format in
# sources.list and sources.list.d/*.list, deb822 in sources.list.d/*.sources),
# skipping security archives, which cannot bootstrap a system.
apt_default_mirror() {
  local f uri etc="${APT_ETC_DIR:-/etc/apt}"
  for f in "$etc/sources.list" "$etc"/sources.list.d/*; do
    [ -f "$f" ] || continue
    case "$f" in
      *.sources)
        uri=$(awk 'BEGIN { RS = "" }
          {
            types = ""; uris = ""; suites = ""; enabled = "yes"
            n = split($0, lines, "\n")
            for (i = 1; i <= n; i++) {
              l = lines[i]
              if (l ~ /^#/) continue
              key = tolower(l); sub(/:.*/, "", key)
              val = l; sub(/^[^:]*:[ \t]*/, "", val)
              if (key == "types") types = val
              else if (key == "uris") uris = val
              else if (key == "suites") suites = val
              else if (key == "enabled") enabled = tolower(val)
            }
            if (enabled == "no" || (" " types " ") !~ / deb /) next
            split(suites, s, /[ \t]+/)
            if (s[1] ~ /-security$/) next
            split(uris, u, /[ \t]+/)
            if (u[1] != "") { print u[1]; exit }
          }' "$f") ;;
      *.list|*/sources.list)
        uri=$(awk '/^[ \t]*deb[ \t]/ {
            sub(/\[[^]]*\]/, "")
            if ($3 ~ /-security$/) next
            print $2; exit
          }' "$f") ;;
      *) continue ;;
    esac
    if [ -n "$uri" ]; then
      echo "$uri"
      return 0
    fi
  done
  echo "http://deb.debian.org/debian"
}

load_config() {
  MIRROR="" SUITE="" ARCH="" EXTRA_PKGS="" COMPONENTS="main" MINIMAL="no" PROXY=""
  CACHE_DIR="$ROOT_PREFIX/var/cache/corral/instance-debootstrap"
  USE_CACHE="yes" CACHE_MAX_AGE=14 MIN_DISK_MB=512
  CUSTOMIZE_DIR="$CONF_DIR/hooks"
  if [ -f "$CONF_DIR/defaults" ]; then
    # shellcheck disable=SC1091
    . "$CONF_DIR/defaults"
  fi
  FILESYSTEM="${OSP_FILESYSTEM:-ext4}"
  SUITE="${OSP_SUITE:-${SUITE:-${OS_VARIANT:-bookworm}}}"
  MIRROR="${OSP_MIRROR:-$MIRROR}"
  [ -n "$MIRROR" ] || MIRROR=$(apt_default_mirror)
  ARCH="${OSP_ARCH:-$ARCH}"
  [ -n "$ARCH" ] || ARCH=$(dpkg --print-architecture)
  EXTRA_PKGS="${OSP_EXTRA_PKGS:-$EXTRA_PKGS}"
  COMPONENTS="${OSP_COMPONENTS:-$COMPONENTS}"
  MINIMAL="${OSP_MINIMAL:-$MINIMAL}"
  if [ -n "$PROXY" ]; then
    export http_proxy="$PROXY" https_proxy="$PROXY"
  fi
}

# Validates the OSP_* values; prints one line per problem, returns 1 if any.
check_params() {
  local bad=0 item
  case "${OSP_FILESYSTEM:-}" in
    ""|ext2|ext3|ext4) ;;
    *) echo "Invalid value '$OSP_FILESYSTEM' for parameter filesystem (ext2, ext3, ext4)"; bad=1 ;;
  esac
  if [ -n "${OSP_SUITE:-}" ] && ! [[ "$OSP_SUITE" =~ ^[a-z][a-z0-9-]*$ ]]; then
    echo "Invalid value '$OSP_SUITE' for parameter suite"; bad=1
  fi
  if [ -n "${OSP_MIRROR:-}" ] && ! [[ "$OSP_MIRROR" =~ ^(https?|ftp|file):/[^[:space:]]+$ ]]; then
    echo "Invalid value '$OSP_MIRROR' for parameter mirror (http, https, ftp or file URL)"; bad=1
  fi
  if [ -n "${OSP_ARCH:-}" ] && ! [[ "$OSP_ARCH" =~ ^[a-z0-9][a-z0-9-]*$ ]]; then
    echo "Invalid value '$OSP_ARCH' for parameter arch"; bad=1
  fi
  IFS=, read -r -a items <<< "${OSP_EXTRA_PKGS:-}"
  for item in "${items[@]}"; do
    [[ "$item" =~ ^[a-z0-9][a-z0-9+.-]+$ ]] && continue
    echo "Invalid package name '$item' in parameter extra_pkgs"; bad=1
  done
  IFS=, read -r -a items <<< "${OSP_COMPONENTS:-}"
  for item in "${items[@]}"; do
    [[ "$item" =~ ^[a-z0-9][a-z0-9/-]*$ ]] && continue
    echo "Invalid component '$item' in parameter components"; bad=1
  done
  case "${OSP_MINIMAL:-}" in
    ""|yes|no) ;;
    *) echo "Invalid value '$OSP_MINIMAL' for parameter minimal (yes or no)"; bad=1 ;;
  esac
  return $bad
}

# --- block device handling; callers `trap cleanup EXIT` first ------------

LOOPDEV=""
TARGET=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$TARGET" ]; then
    if mountpoint -q "$TARGET"; then
      umount -R "$TARGET" || umount -R -l "$TARGET"
    fi
    rmdir "$TARGET"
  fi
  if [ -n "$LOOPDEV" ]; then
    losetup -d "$LOOPDEV"
  fi
  exit $rc
}

install_cleanup_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

# Sets BLOCKDEV to a block device for disk 0: the device itself, or a loop
# device over a regular file (detached by cleanup).
attach_disk0() {
  [ "${DISK_COUNT:-0}" -ge 1 ] || die "the instance has no disks"
  [ -n "${DISK_0_PATH:-}" ] || die "disk 0 has no local path (userspace-only disks are not supported)"
  if [ -b "$DISK_0_PATH" ]; then
    BLOCKDEV="$DISK_0_PATH"
  elif [ -f "$DISK_0_PATH" ]; then
    LOOPDEV=$(losetup --show -f "$DISK_0_PATH")
    BLOCKDEV="$LOOPDEV"
  else
    die "disk 0 path '$DISK_0_PATH' is neither a block device nor a file"
  fi
}

disk0_size_mb() {
  if [ -n "${DISK_0_SIZE:-}" ]; then
    echo "$DISK_0_SIZE"
  else
    echo $(( $(blockdev --getsize64 "$BLOCKDEV") / 1048576 ))
  fi
}

mount_target() {
  TARGET=$(mktemp -d /tmp/debootstrap-os.XXXXXX)
  mount "$BLOCKDEV" "$TARGET"
}

serial_port() {
  case "${HYPERVISOR:-}" in
    xen-pvm) echo hvc0 ;;
    *) echo ttyS0 ;;
  esac
}
