"""The node agent: talks to the control plane over the Kubernetes API and to the
runtime over CRI gRPC only."""
