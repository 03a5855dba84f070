#!/bin/sh
# generate.sh - regenerate kubelet_pb2.py from kubelet.proto (messages only;
# the tests call the methods by path), run from the top of the checkout.
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-.}
protoc -I . --python_out="$OUT" tests/kubelet/kubelet.proto
