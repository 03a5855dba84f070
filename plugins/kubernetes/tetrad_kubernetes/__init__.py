"""tetrad-kubernetes: pod identity for tetrad on Kubernetes nodes.

A tetrad plugin (tetrad/plugins.py), found through the entry point
`kubernetes` in the group `tetrad.plugins` and started when
`[kubernetes] enabled = true`. Node-local: no API server is needed.
  spec.py       what the plugin is to tetrad: its config keys, start()
  pods.py       the pod source (tetrad/containers/pods.py): pods and their
                containers from the CRI, as the kubelet made them, cached
  workload.py   which workload a pod belongs to (labels, owner references)
  kubelet.py    the kubelet's authenticated /pods as a second source
"""
