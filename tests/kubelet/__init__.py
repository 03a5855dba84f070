"""The kubelet side of the CRI, for tests: kubelet.proto, its generated messages, a recorded-form PodList."""
