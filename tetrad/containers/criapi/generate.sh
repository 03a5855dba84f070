#!/bin/sh
# generate.sh - regenerate the CRI API modules from api.proto, run from the top
# of the checkout. Messages: protoc of Debian's protobuf-compiler (the version
# of python3-protobuf, 3.21); service stubs: the gRPC plugin of Debian's
# python3-grpc-tools. The output is committed: nothing is generated at run time.
set -eu
cd "$(dirname "$0")/../../.."
OUT=${1:-.}
protoc -I . --python_out="$OUT" tetrad/containers/criapi/api.proto
/usr/bin/python3 -m grpc_tools.protoc -I . --grpc_python_out="$OUT" tetrad/containers/criapi/api.proto
