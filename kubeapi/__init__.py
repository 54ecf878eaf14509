"""A Kubernetes API client on plain dicts, shared by the control-plane loops and the
kubelet: REST + watch over HTTP(S) with kubeconfig credentials (client), resource
quantities (quantity) and taint tolerations (tolerations). It knows nothing of
kubeling's own API server, so everything built on it runs the same against a real
kube-apiserver."""
