#!/usr/bin/env bash
# Fetches the real, openly licensed T1 scans the preprocessing tests use (nothing large is committed):
# Debian's mricron-data (BSD-3-Clause): Colin27 ("ch2", one person scanned 27 times, 1 mm, MNI space) with
# its skull (ch2.nii.gz) and skull-stripped (ch2bet.nii.gz). Into $HYPERFUSION_REAL_SCANS (default
# tests/.real_scans). Tests that need them skip, saying so, when they are absent. The DICOM test series is
# written from ch2.nii.gz at test time (scripts/make_dicom_series.py): no real 3-D T1 DICOM series is packaged.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${HYPERFUSION_REAL_SCANS:-tests/.real_scans}"
if [ -f "$dest/ch2.nii.gz" ] && [ -f "$dest/ch2bet.nii.gz" ]; then exit 0; fi
mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sudo_="" ; [ "$(id -u)" = 0 ] || sudo_="sudo"
( cd "$work" && (apt-get download mricron-data >/dev/null 2>&1 \
  || ($sudo_ apt-get update -qq && apt-get download mricron-data >/dev/null 2>&1)) )
dpkg-deb -x "$work"/mricron-data_*.deb "$work/x"
cp "$work/x/usr/share/mricron/templates/ch2.nii.gz" "$work/x/usr/share/mricron/templates/ch2bet.nii.gz" "$dest/"
cp "$work/x/usr/share/doc/mricron-data/copyright" "$dest/COPYRIGHT.mricron-data"
echo "real scans in $dest: $(ls "$dest" | tr '\n' ' ')"
