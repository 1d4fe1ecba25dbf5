"""tmesh: benchmark LLM inference stacks on a KV-cache-reuse workload."""

__version__ = "0.2.0"
