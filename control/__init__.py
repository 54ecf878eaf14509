"""The control plane: API server and storage, scheduler, controllers. Talks to nodes
over HTTP only."""
