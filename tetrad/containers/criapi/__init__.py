"""The CRI API's messages (api_pb2) and service stubs (api_pb2_grpc), generated
from api.proto by generate.sh and committed. Imported only by
tetrad/containers/cri.py (and the Kubernetes plugin through it), after grpc:
importing them needs python3-protobuf."""
