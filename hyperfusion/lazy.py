"""Package names imported on first use (PEP 562), so importing one light module of a package does not pay for
its heavy siblings (torch, scipy, nibabel): the dashboard's first page and ``hyperfusion --help`` stay fast."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list]]:
    """(``__getattr__``, ``__dir__``) for ``package``'s ``__init__``: ``exports`` maps each public name to the
    submodule defining it; the name is imported from there when first used, then kept in the package."""
    namespace = import_module(package).__dict__

    def __getattr__(name: str) -> object:
        if name in exports:
            value = getattr(import_module(f"{package}.{exports[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
