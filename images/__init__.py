"""Image references, registries, pulls through skopeo, the content store, layer
unpacking and snapshots."""
