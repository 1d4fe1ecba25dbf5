"""The optional packages runs-as-a-dataset needs, loaded when first used.

pyarrow and DuckDB are large (about 240 MB installed together) and only the dataset features use
them, so they are an extra (`data`) rather than dependencies, and are imported on first use: a
benchmark never pays for them, and a missing one is one line saying what to install, not an
ImportError from deep inside.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRA = "pip install -e '.[data]' in tmesh's source folder"
INSTALL = {
    "pyarrow": EXTRA,
    "pyarrow.parquet": EXTRA,
    "pyarrow.json": EXTRA,
    "duckdb": EXTRA,
    "pandas": "pip install pandas",
    "polars": "pip install polars",
}


class MissingDependency(ImportError):
    """An optional package a feature needs is not installed; `str()` says what to install."""


def require(name: str, feature: str) -> ModuleType:
    """The module `name`, or `MissingDependency` naming `feature` and the install command."""
    try:
        return importlib.import_module(name)
    except ImportError:
        package = name.split(".")[0]
        raise MissingDependency(
            f"{feature} needs {package}, which is not installed: {INSTALL.get(name, EXTRA)}"
        ) from None
