"""The CRI v1 gRPC server (RuntimeService and ImageService) over `images` and `runtime`."""
