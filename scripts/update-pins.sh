#!/bin/bash
# Moves every pin in image/pins.txt to the version apt offers now, keeping
# comments, blank lines and the order. A linux-image-<abi>-<flavour> pin
# follows the linux-image-<flavour> metapackage to the current ABI package.
#
#   scripts/update-pins.sh [--no-update] [--pins FILE]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PINS=${OSAM_PINS:-$ROOT/image/pins.txt}
UPDATE=1

say() { printf 'update-pins: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	--no-update) UPDATE=0; shift ;;
	--pins) [ $# -ge 2 ] || die "--pins needs a value"; PINS=$2; shift 2 ;;
	--pins=*) PINS=${1#--pins=}; shift ;;
	-h | --help) sed -n '2,6s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) die "unknown argument '$1'" ;;
	esac
done
[ -r "$PINS" ] || die "cannot read the pins file $PINS"

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "'$*' needs root (or sudo)"; fi
}

if [ "$UPDATE" = 1 ]; then
	native=$(dpkg --print-architecture)
	while read -r a; do
		if [ "$a" != all ] && [ "$a" != "$native" ] && ! dpkg --print-foreign-architectures | grep -qx "$a"; then
			say "adding the $a architecture to dpkg"
			as_root dpkg --add-architecture "$a"
		fi
	done < <(sed 's/#.*//' "$PINS" | awk 'NF == 3 {print $1}' | sort -u)
	say "updating apt's package lists"
	as_root apt-get update -qq >&2 || say "warning: apt-get update reported errors; going on with the lists apt has"
fi

qualified() { if [ "$1" = all ]; then printf '%s' "$2"; else printf '%s:%s' "$2" "$1"; fi; }
candidate() { apt-cache policy "$(qualified "$1" "$2")" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2}'; }

# linux-image-6.1.0-50-amd64 -> linux-image-6.1.0-56-amd64, through the
# Depends of the candidate linux-image-amd64 (and -unsigned alike).
follow_kernel() {
	local arch=$1 pkg=$2 flavour suffix="" dep
	flavour=$(sed -nE 's/^linux-image-[0-9]+\.[0-9]+\.[0-9]+-[0-9]+-(.+)$/\1/p' <<<"$pkg")
	[ -n "$flavour" ] || { echo "$pkg"; return; }
	case $flavour in *-unsigned) suffix=-unsigned flavour=${flavour%-unsigned} ;; esac
	dep=$(apt-cache show --no-all-versions "$(qualified "$arch" "linux-image-$flavour")" 2>/dev/null |
		sed -n 's/^Depends: //p' | tr ',' '\n' | sed -E 's/^ *//; s/[ (:].*//' |
		grep -E "^linux-image-[0-9].*-$flavour\$" | head -n1)
	if [ -z "$dep" ]; then
		say "warning: no metapackage linux-image-$flavour ($arch) to follow; keeping $pkg"
		echo "$pkg"
	else
		echo "$dep$suffix"
	fi
}

out=$(mktemp "$PINS.XXXXXX")
trap 'rm -f "$out"' EXIT
changed=0 failed=0
while IFS= read -r line || [ -n "$line" ]; do
	body=${line%%#*}
	read -r -a f <<<"$body" || true
	if [ ${#f[@]} -ne 3 ]; then
		[ ${#f[@]} -eq 0 ] || { say "warning: keeping a line that is not '<arch> <package> <version>': $line"; }
		printf '%s\n' "$line" >>"$out"
		continue
	fi
	arch=${f[0]} pkg=${f[1]} ver=${f[2]}
	comment=""
	[ "$body" = "$line" ] || comment=" #${line#*#}"
	newpkg=$(follow_kernel "$arch" "$pkg")
	newver=$(candidate "$arch" "$newpkg")
	if [ -z "$newver" ]; then
		say "error: the archive offers no $(qualified "$arch" "$newpkg"); keeping '$arch $pkg $ver'"
		failed=1
		printf '%s\n' "$line" >>"$out"
		continue
	fi
	if [ "$newpkg $newver" != "$pkg $ver" ]; then
		say "$arch: $pkg $ver -> $newpkg $newver"
		changed=$((changed + 1))
	fi
	printf '%s %s %s%s\n' "$arch" "$newpkg" "$newver" "$comment" >>"$out"
done <"$PINS"

if [ "$changed" -gt 0 ]; then
	chmod --reference="$PINS" "$out"
	mv -f "$out" "$PINS"
	trap - EXIT
	say "$changed pin(s) changed in $PINS"
else
	say "all pins are current"
fi
exit "$failed"
