#!/bin/sh
# Gets the sources of `tailor data build` (docs/DATA.md): the Debian packages with the images and
# fonts -- installed when run as root, otherwise the one apt-get line to run is printed -- and
# scikit-learn's digits.csv.gz, taken out of the python3-sklearn .deb (apt-get download + dpkg -x,
# no root needed, python3-sklearn is not installed) into the cache directory
# ${TAILOR_DATA_SOURCES:-~/.cache/tailor/sources}.
set -eu

# Images and data sets.
packages="opencv-doc dataset-fashion-mnist"
# Handwriting-style fonts (world corpus only).
packages="$packages fonts-dkg-handwriting fonts-breip fonts-bwht fonts-femkeklaver fonts-klee fonts-kristi
 fonts-humor-sans fonts-comic-neue fonts-dancingscript"
# Print-style fonts (print digits and the world corpus).
packages="$packages fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-freefont-ttf fonts-croscore
 fonts-crosextra-carlito fonts-crosextra-caladea fonts-urw-base35 fonts-linuxlibertine fonts-roboto-unhinted
 fonts-open-sans fonts-lato fonts-cantarell fonts-inconsolata fonts-hack fonts-firacode fonts-texgyre
 fonts-ebgaramond fonts-oldstandard fonts-noto-mono fonts-go fonts-lmodern"

status=0
missing=""
for package in $packages; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "installing missing Debian packages:$missing" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends $missing >&2
    else
        echo "error: missing Debian packages; run: sudo apt-get install -y --no-install-recommends$missing" >&2
        status=1
    fi
fi

sources="${TAILOR_DATA_SOURCES:-$HOME/.cache/tailor/sources}"
digits="$sources/digits.csv.gz"
if [ ! -s "$digits" ]; then
    mkdir -p "$sources"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    if ! (cd "$work" && apt-get download python3-sklearn >/dev/null 2>&1); then
        if [ "$(id -u)" -eq 0 ]; then
            apt-get update -qq >&2
            (cd "$work" && apt-get download python3-sklearn >/dev/null)
        else
            echo "error: apt-get download python3-sklearn failed (package lists out of date? run: sudo apt-get update)" >&2
            exit 1
        fi
    fi
    dpkg -x "$work"/python3-sklearn_*.deb "$work/x"
    found=$(find "$work/x" -path '*/sklearn/datasets/data/digits.csv.gz' | head -n 1)
    if [ -z "$found" ]; then
        echo "error: python3-sklearn's .deb has no sklearn/datasets/data/digits.csv.gz" >&2
        exit 1
    fi
    cp "$found" "$digits.tmp"
    mv "$digits.tmp" "$digits"
    echo "digits.csv.gz (from python3-sklearn) -> $digits" >&2
fi
exit $status
