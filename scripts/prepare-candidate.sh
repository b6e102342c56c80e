#!/usr/bin/env bash
# Put the code of a git ref into .candidate/ (ignored by git), for scripts/gpu-ab.sh to run against
# this checkout on a GPU machine; the device tool must carry it (carry: [".candidate"]).
#
#   scripts/prepare-candidate.sh kernels2
set -euo pipefail
REF=${1:?usage: scripts/prepare-candidate.sh GIT_REF}
cd "$(dirname "$0")/.."
rm -rf .candidate
mkdir .candidate
git archive "$REF" -- rnnbench kernels baselines harness tests scripts pyproject.toml | tar -x -C .candidate
echo "$REF $(git rev-parse "$REF")" > .candidate/REVISION
echo ".candidate/: $REF ($(git rev-parse --short "$REF")), $(du -sh .candidate | cut -f1)"
