"""The Python API; its names are re-exported by `tmesh` itself (`tmesh.benchmark`, …)."""
