#!/bin/bash
# Moves every pin in image/pins.txt to the version apt offers now, keeping
# comments, blank lines and the order. A linux-image-<abi>-<flavour> pin
# follows the linux-image-<flavour> metapackage to the current ABI package.
# Then regenerates the closure block: the packages that the pins marked
# '# root' depend on (Depends and Pre-Depends, recursively), per arch.
#
#   scripts/update-pins.sh [--no-update] [--pins FILE]
#
# The closure is what apt resolves for the roots on an empty system of that
# one architecture (a throwaway dpkg status, nothing installed), minus the
# packages in EXCLUDE below and whatever only they pull in.
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
	-h | --help) sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
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

# --- the closure of the roots ---------------------------------------------
BEGIN='# >>> closure'
END='# <<< closure'

# Packages the stack never loads a file from, with everything that only they
# pull in. Extended regular expressions on the package name.
#   maintainer-script and packaging machinery: debconf, dpkg, adduser,
#     passwd, init-system-helpers, lsb-base, lsb-release, usrmerge, tar,
#     sysvinit-utils, logsave (e2fsprogs' Depends; e2fsck does not exec it);
#   interpreters of helper scripts: perl*, lib*-perl, python3*, libpython3*;
#   daemons and managers PID 1 replaces: systemd, udev, dmeventd (monitoring
#     is off in the stack's lvm.conf);
#   open-vm-tools' helper scripts' tools: iproute2, pciutils, pci.ids
#     (busybox has ip and lspci);
#   packages with data only: gcc-12-base, media-types, readline-common,
#     libaudit-common, libsemanage-common, libdrm-common;
#   PAM's modules and tools (libpam0g stays if a tool links it);
#   libcap2-bin (setcap/getcap).
EXCLUDE='^(debconf|dpkg|adduser|passwd|init-system-helpers|lsb-base|lsb-release|usrmerge|tar|sysvinit-utils|logsave|perl|perl-base|perl-modules-.*|lib.*-perl|libperl.*|python3.*|libpython3.*|systemd|systemd-.*|udev|dmeventd|iproute2|pciutils|pci\.ids|gcc-[0-9]+-base|media-types|readline-common|libaudit-common|libsemanage-common|libdrm-common|libpam-modules|libpam-modules-bin|libpam-runtime|libcap2-bin)$'

# apt-get and apt-cache as if this machine were an empty one of arch $1.
apt_as() {
	local arch=$1 tool=$2
	shift 2
	"$tool" -o Dir::State::status="$EMPTY_STATUS" -o Debug::NoLocking=1 \
		-o APT::Architecture="$arch" -o APT::Architectures::="$arch" \
		-o APT::Install-Recommends=0 -o APT::Install-Suggests=0 "$@"
}

# Prints '<arch> <package> <version>' for the closure of the roots of one
# debian arch (given as '<package>=<version>' arguments).
closure_of() {
	local arch=$1
	shift
	local uris records
	uris=$(apt_as "$arch" apt-get install --print-uris -qq "$@" 2>&1) || {
		say "error: apt cannot resolve the $arch roots: $uris"
		return 1
	}
	# 'URL' file_version_arch.deb size hash -> name=version for apt-cache.
	local resolved=()
	while read -r file; do
		file=${file%.deb}
		local n=${file%%_*} rest=${file#*_}
		local v=${rest%_*}
		resolved+=("$n=${v//%3a/:}")
	done < <(awk '{print $2}' <<<"$uris")
	records=$(apt_as "$arch" apt-cache show "${resolved[@]}") || return 1
	local roots=()
	for r in "$@"; do roots+=("${r%%=*}"); done
	# Breadth-first walk over Depends and Pre-Depends among the resolved
	# packages, not entering excluded ones. An alternative or virtual
	# dependency leads to every resolved package that satisfies it.
	awk -v roots="${roots[*]}" -v exclude="$EXCLUDE" '
		function flush() {
			if (pkg != "") { ver[pkg] = v; arch[pkg] = a; deps[pkg] = d }
			pkg = ""; v = ""; a = ""; d = ""
		}
		/^Package: / { flush(); pkg = $2 }
		/^Version: / { v = $2 }
		/^Architecture: / { a = $2 }
		/^(Depends|Pre-Depends): / { sub(/^[^:]*: /, ""); d = d (d == "" ? "" : ",") $0 }
		/^Provides: / {
			sub(/^Provides: /, ""); n = split($0, pr, /, */)
			for (i = 1; i <= n; i++) { sub(/ .*/, "", pr[i]); prov[pr[i]] = prov[pr[i]] " " pkg }
		}
		END {
			flush()
			n = split(roots, queue, " "); head = 1
			for (i = 1; i <= n; i++) seen[queue[i]] = 1
			while (head <= n) {
				p = queue[head++]
				if (!(p in ver)) continue
				m = split(deps[p], groups, /[,|]/)
				for (i = 1; i <= m; i++) {
					dep = groups[i]; gsub(/^ +| +$/, "", dep); sub(/[ (:].*/, "", dep)
					cands = ((dep in ver) ? dep : "") prov[dep]
					k = split(cands, cs, " ")
					for (j = 1; j <= k; j++) {
						c = cs[j]
						if (c in seen || c ~ exclude) continue
						seen[c] = 1; queue[++n] = c
					}
				}
			}
			for (p in seen) if (p in ver) print arch[p], p, ver[p]
		}' <<<"$records" | sort -k2,2 -k1,1
}

# Rewrites the closure block of pins file $1 from its '# root' pins.
regenerate_closure() {
	local file=$1 a
	EMPTY_STATUS=$(mktemp)
	local block
	block=$(mktemp)
	local ok=0
	{
		printf '%s (generated by scripts/update-pins.sh from the pins marked root; do not edit)\n' "$BEGIN"
		for a in amd64 i386; do
			local specs=()
			mapfile -t specs < <(sed -n 's/^\(amd64\|i386\) \([^ ]*\) \([^ #]*\) *# *root\b.*$/\1 \2=\3/p' "$file" | awk -v a="$a" '$1 == a {print $2}')
			[ ${#specs[@]} -gt 0 ] || continue
			printf '# %s\n' "$a"
			closure_of "$a" "${specs[@]}" | awk '{print $1, $2, $3}' | grep -vxF -f <(sed -n 's/^\([a-z0-9]* [^ ]* [^ #]*\) *# *root\b.*$/\1/p' "$file") || ok=1
		done
		printf '%s\n' "$END"
	} >"$block"
	rm -f "$EMPTY_STATUS"
	[ "$ok" = 0 ] || { rm -f "$block"; say "error: could not compute the closure; keeping the old block"; return 1; }
	# 'all' packages both arches need are pinned once.
	local merged
	merged=$(mktemp)
	awk '!($1 == "all" && seen[$0]++)' "$block" >"$merged"
	mv -f "$merged" "$block"
	local tmp
	tmp=$(mktemp "$file.XXXXXX")
	if grep -q "^$BEGIN" "$file"; then
		awk -v begin="$BEGIN" -v end="$END" -v block="$block" '
			index($0, begin) == 1 { while ((getline l < block) > 0) print l; skip = 1; next }
			index($0, end) == 1 { skip = 0; next }
			!skip' "$file" >"$tmp"
	else
		{ cat "$file"; echo; cat "$block"; } >"$tmp"
	fi
	mv -f "$tmp" "$file"
	rm -f "$block"
}

out=$(mktemp "$PINS.XXXXXX")
trap 'rm -f "$out"' EXIT
changed=0 failed=0
in_closure=0
while IFS= read -r line || [ -n "$line" ]; do
	case $line in
	"$BEGIN"*) in_closure=1; printf '%s\n' "$line" >>"$out"; continue ;;
	"$END"*) in_closure=0; printf '%s\n' "$line" >>"$out"; continue ;;
	esac
	# The closure block is regenerated below.
	[ "$in_closure" = 1 ] && continue
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

regenerate_closure "$out" || failed=1
cmp -s "$out" "$PINS" || changed=$((changed + 1))

if [ "$changed" -gt 0 ]; then
	chmod --reference="$PINS" "$out"
	mv -f "$out" "$PINS"
	trap - EXIT
	say "$changed pin(s) changed in $PINS"
else
	say "all pins are current"
fi
exit "$failed"
