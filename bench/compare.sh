#!/usr/bin/env bash
# bench/compare.sh: lowbit against PyTorch, pair by pair (bench/compare.py, run by Debian's
# /usr/bin/python3, which has torch; its header has the options and the runtime of a full run).
# Usage: bench/compare.sh [--quick] [--models resnet20,...] [--configs fp,w4a4] [--rounds 3] ...
exec /usr/bin/python3 "$(dirname "$0")/compare.py" "$@"
