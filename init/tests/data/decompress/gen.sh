#!/bin/sh
# Regenerates the decompression fixtures used by init/src/decompress.rs.
# Made with the command-line tools (xz 5.4, zstd 1.5, lz4 1.9, bzip2,
# gzip); the plain text is reproducible, the compressed files are what
# those tools made once and are kept as they are.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The plain text: counting text, table-like lines, pseudo-random bytes
# (stored as LZMA2 uncompressed chunks), a run of zeros, and the same noise
# again far back (a long match distance).
noise() {
    head -c 8192 /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 00000000000000000000000000000000
}
{
    seq 1 12000
    awk 'BEGIN { for (i = 0; i < 1500; i++)
        printf "alias pci:v%08Xd%08Xsv*sd*bc*sc*i* mod_%d\n", i * 7919 % 65536, i * 104729 % 65536, i % 97 }'
    noise
    head -c 30000 /dev/zero
    seq 5000 -3 1
    noise
} >"$tmp/plain.bin"
half=$(($(wc -c <"$tmp/plain.bin") / 2))
head -c "$half" "$tmp/plain.bin" >"$tmp/a"
tail -c +"$((half + 1))" "$tmp/plain.bin" >"$tmp/b"

gzip -9 -n -c "$tmp/plain.bin" >plain.bin.gz
xz --check=crc32 --lzma2=dict=1MiB -c "$tmp/plain.bin" >plain.bin.xz
# Two streams, the first of several blocks, with stream padding between.
{
    xz --check=crc32 --block-size=20000 -c "$tmp/a"
    printf '\0\0\0\0'
    xz --check=crc32 -c "$tmp/b"
} >plain.blocks.xz
xz --check=crc64 -c "$tmp/plain.bin" >plain.crc64.xz
xz --check=sha256 -c "$tmp/plain.bin" >plain.sha256.xz
xz --check=none -c "$tmp/plain.bin" >plain.none.xz
xz -9e --check=crc32 -c "$tmp/plain.bin" >plain.extreme.xz
xz --check=crc32 --lzma2=lc=1,lp=3,pb=4 -c "$tmp/plain.bin" >plain.lclp.xz
xz --format=lzma -c "$tmp/plain.bin" >plain.bin.lzma
zstd -q -19 -c "$tmp/plain.bin" >plain.bin.zst
# Two frames with a skippable frame (magic 0x184D2A50, 4 bytes) between.
{
    zstd -q -c "$tmp/a"
    printf '\120\052\115\030\004\000\000\000skip'
    zstd -q --no-check -c "$tmp/b"
} >plain.multi.zst
# LZ4 compresses this text poorly; its fixtures hold the first 40000 bytes.
head -c 40000 "$tmp/plain.bin" >"$tmp/head"
lz4 -q -c "$tmp/head" >plain.head.lz4
lz4 -q -l -c "$tmp/head" >plain.head.legacy.lz4

printf 'OSAM fixup stack: hello, modules!\n' >"$tmp/small.txt"
xz --check=crc32 -c "$tmp/small.txt" >small.txt.xz
xz --check=crc32 --x86 --lzma2 -c "$tmp/small.txt" >small.bcj.xz
zstd -q -c "$tmp/small.txt" >small.txt.zst
bzip2 -c "$tmp/small.txt" >small.txt.bz2

# 16 MiB of zeros: a small "bomb" for the output cap.
head -c 16777216 /dev/zero >"$tmp/zeros"
xz --check=crc32 -c "$tmp/zeros" >zeros.xz
zstd -q -19 -c "$tmp/zeros" >zeros.zst
