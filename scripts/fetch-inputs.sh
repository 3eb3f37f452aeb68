#!/bin/bash
# Downloads the Debian packages pinned in image/pins.txt, exactly those
# versions, into ${XDG_CACHE_HOME:-$HOME/.cache}/osam/debs/<pins hash>/.
#
#   scripts/fetch-inputs.sh [--arch amd64|i386|all] [--pins FILE]
#
# Idempotent: with every selected package already in the cache it touches
# nothing. Downloads land in a temporary folder and are renamed into place,
# so an interrupted run never leaves a partial file in the cache. The last
# line on stdout is the cache folder; everything else goes to stderr.
#
# The stack's tools are the pins marked '# root' and their libraries the
# pins of the generated '# >>> closure' block (scripts/update-pins.sh); all
# are plain pins here, fetched at exactly their versions. A failing
# 'apt-get update' (an index that does not download) is only a warning: the
# pins are checked against the lists apt has.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PINS=${OSAM_PINS:-$ROOT/image/pins.txt}
ARCH=all

usage() {
	sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}
say() { printf 'fetch-inputs: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	--arch) [ $# -ge 2 ] || die "--arch needs a value"; ARCH=$2; shift 2 ;;
	--arch=*) ARCH=${1#--arch=}; shift ;;
	--pins) [ $# -ge 2 ] || die "--pins needs a value"; PINS=$2; shift 2 ;;
	--pins=*) PINS=${1#--pins=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
case $ARCH in
amd64 | i386 | all) ;;
*) die "unknown --arch '$ARCH' (amd64, i386 or all)" ;;
esac
[ -r "$PINS" ] || die "cannot read the pins file $PINS"
if grep -q '#[[:space:]]*root\b' "$PINS" && ! grep -q '^# >>> closure' "$PINS"; then
	say "warning: $PINS marks root pins but has no closure block; run scripts/update-pins.sh"
fi

CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/osam/debs
HASH=$(sha256sum "$PINS" | cut -c1-16)
CACHE=$CACHE_ROOT/$HASH

# --- the pins ------------------------------------------------------------
P_ARCH=() P_PKG=() P_VER=()
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
	lineno=$((lineno + 1))
	line=${line%%#*}
	read -r -a fields <<<"$line" || true
	[ ${#fields[@]} -eq 0 ] && continue
	[ ${#fields[@]} -eq 3 ] || die "$PINS:$lineno: expected '<debian-arch> <package> <version>'"
	case ${fields[0]} in
	amd64 | i386 | all) ;;
	*) die "$PINS:$lineno: unknown architecture '${fields[0]}'" ;;
	esac
	if [ "$ARCH" = all ] || [ "${fields[0]}" = "$ARCH" ] || [ "${fields[0]}" = all ]; then
		P_ARCH+=("${fields[0]}") P_PKG+=("${fields[1]}") P_VER+=("${fields[2]}")
	fi
done <"$PINS"

# The file name apt-get download gives a package (an epoch's ':' as %3a).
deb_name() { printf '%s_%s_%s.deb' "$2" "${3//:/%3a}" "$1"; }
# What apt-get is asked for.
apt_spec() {
	if [ "$1" = all ]; then printf '%s=%s' "$2" "$3"; else printf '%s:%s=%s' "$2" "$1" "$3"; fi
}
apt_name() {
	if [ "$1" = all ]; then printf '%s' "$2"; else printf '%s:%s' "$2" "$1"; fi
}

missing=()
for i in "${!P_PKG[@]}"; do
	[ -f "$CACHE/$(deb_name "${P_ARCH[$i]}" "${P_PKG[$i]}" "${P_VER[$i]}")" ] || missing+=("$i")
done
if [ ${#missing[@]} -eq 0 ]; then
	say "cache complete for --arch $ARCH"
	echo "$CACHE"
	exit 0
fi

# --- one run at a time (parallel tests call this script too) -------------
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
flock 9
# Another run may have filled the cache while this one waited.
still=()
for i in "${missing[@]}"; do
	[ -f "$CACHE/$(deb_name "${P_ARCH[$i]}" "${P_PKG[$i]}" "${P_VER[$i]}")" ] || still+=("$i")
done
missing=("${still[@]}")
if [ ${#missing[@]} -eq 0 ]; then
	echo "$CACHE"
	exit 0
fi

as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "'$*' needs root (or sudo)"
	fi
}

# --- make apt know the architectures and the versions --------------------
updated=0
native=$(dpkg --print-architecture)
for i in "${missing[@]}"; do
	a=${P_ARCH[$i]}
	if [ "$a" != all ] && [ "$a" != "$native" ] &&
		! dpkg --print-foreign-architectures | grep -qx "$a"; then
		say "adding the $a architecture to dpkg"
		as_root dpkg --add-architecture "$a"
		updated=-1
	fi
done

# The versions the archive offers for a package, one a line.
offered() {
	apt-cache madison "$(apt_name "$1" "$2")" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' | sort -u
}
available() { offered "$1" "$2" | grep -qxF -- "$3"; }
unavailable() {
	local i out=()
	for i in "${missing[@]}"; do
		available "${P_ARCH[$i]}" "${P_PKG[$i]}" "${P_VER[$i]}" || out+=("$i")
	done
	echo "${out[@]}"
}

gone=$(unavailable)
if [ "$updated" != 0 ] || [ -n "$gone" ]; then
	say "updating apt's package lists"
	as_root apt-get update -qq >&2 || say "warning: apt-get update reported errors; going on with the lists apt has"
	gone=$(unavailable)
fi
if [ -n "$gone" ]; then
	for i in $gone; do
		offers=$(offered "${P_ARCH[$i]}" "${P_PKG[$i]}" | paste -sd, - | sed 's/,/, /g')
		say "error: ${P_PKG[$i]} (${P_ARCH[$i]}): the pinned version ${P_VER[$i]} is not in the archive;" \
			"the archive now offers: ${offers:-nothing under that name (a new kernel ABI renames linux-image-* packages)}"
	done
	say "run 'make update-pins' (scripts/update-pins.sh) to move $PINS to what the archive offers now"
	exit 1
fi

# --- download into a temporary folder, check, rename into place ----------
TMP=$(mktemp -d "$CACHE_ROOT/.tmp-$HASH.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
specs=()
for i in "${missing[@]}"; do
	specs+=("$(apt_spec "${P_ARCH[$i]}" "${P_PKG[$i]}" "${P_VER[$i]}")")
done
say "downloading ${specs[*]}"
apt_opts=(-q)
# As root apt drops to _apt for downloads, which cannot write the 0700 folder.
[ "$(id -u)" = 0 ] && apt_opts+=(-o APT::Sandbox::User=root)
(cd "$TMP" && apt-get "${apt_opts[@]}" download "${specs[@]}" >&2) || die "apt-get download failed"

for i in "${missing[@]}"; do
	a=${P_ARCH[$i]} p=${P_PKG[$i]} v=${P_VER[$i]}
	f=$TMP/$(deb_name "$a" "$p" "$v")
	[ -f "$f" ] || die "apt-get download left no $(basename "$f")"
	got=$(dpkg-deb -f "$f" Package Version Architecture | awk -F': ' '{print $2}' | paste -sd' ' -)
	[ "$got" = "$p $v $a" ] || die "$(basename "$f") is '$got', expected '$p $v $a'"
done

if [ ! -e "$CACHE" ]; then
	cp "$PINS" "$TMP/pins.txt"
	chmod 0755 "$TMP"
	(cd "$TMP" && sha256sum -- *.deb >SHA256SUMS)
	mv -T "$TMP" "$CACHE"
	trap - EXIT
else
	for f in "$TMP"/*.deb; do
		mv -f "$f" "$CACHE/"
	done
	(cd "$CACHE" && sha256sum -- *.deb >"$TMP/SHA256SUMS" && mv -f "$TMP/SHA256SUMS" SHA256SUMS)
fi
say "cached ${#missing[@]} package(s)"
echo "$CACHE"
