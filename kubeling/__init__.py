"""The `kubeling` command: one front door that dispatches to each layer's CLI."""
