"""Finding models on disk: which directories are a model, an ensemble of fold models, or a folder of them.

:func:`member_dirs` is the one rule for "a model or an ensemble" (the Predictor, ``hyperfusion evaluate`` and
the dashboard use it); :func:`find_models` walks folders and describes every model it finds from its cards,
without loading weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hyperfusion.errors import HyperFusionError, ModelFileError
from hyperfusion.inference.model_files import CARD_FILE, ModelCard, read_card

__all__ = ["ModelInfo", "find_models", "member_dirs", "models_for_task", "paths_of"]


def member_dirs(path: str | Path) -> list[Path]:
    """The model directories of ``path``: itself if it holds a card, else its sub-directories that do (an
    ensemble); :class:`ModelFileError` when it is neither."""
    path = Path(path)
    if (path / CARD_FILE).is_file():
        return [path]
    dirs = sorted(d for d in path.iterdir() if (d / CARD_FILE).is_file()) if path.is_dir() else []
    if not dirs:
        raise ModelFileError(f"{path}: neither a model directory (card.json) nor an ensemble of them")
    return dirs


@dataclass(frozen=True)
class ModelInfo:
    """A model or ensemble found on disk, described from its card(s) without loading any weights."""

    name: str
    path: str
    cards: tuple[ModelCard, ...]  # one per member
    card_paths: tuple[str, ...]

    @property
    def task(self) -> str:
        return self.cards[0].task

    @property
    def architecture(self) -> str:
        return self.cards[0].name

    @property
    def members(self) -> int:
        return len(self.cards)

    @property
    def synthetic(self) -> bool:
        return any(c.synthetic for c in self.cards)

    def row(self) -> dict:
        """The model as one row of a table of models."""
        return {
            "model": self.name,
            "task": self.task,
            "architecture": self.architecture,
            "members": self.members,
        }


def models_for_task(models: list[ModelInfo], task: str | None) -> list[ModelInfo]:
    """The models of ``task`` (all of them when ``task`` is None, e.g. a cohort that does not say)."""
    return [m for m in models if task in (None, m.task)]


def paths_of(models: list[ModelInfo]) -> tuple[tuple[str, str], ...]:
    """(name, path) of each model: what a Predictor is built from, hashable (a cache key)."""
    return tuple((m.name, m.path) for m in models)


def _info(name: str, members: list[Path], path: Path) -> ModelInfo:
    cards = tuple(read_card(m) for m in members)
    return ModelInfo(name, str(path), cards, tuple(str(m / CARD_FILE) for m in members))


def find_models(roots: str | Path | list[str | Path]) -> tuple[list[ModelInfo], list[str]]:
    """Models and ensembles under ``roots`` (a list, or one string of ``os.pathsep``-separated folders);
    returns (models, problems).

    A directory with ``card.json`` is a model; one whose sub-directories all hold cards of one architecture and
    task is an ensemble of them (a folder of different models, like the demo's ``brain_age``, is not); any
    other directory is searched, three levels deep. Models are named by their path under the root.
    """
    if isinstance(roots, str):
        roots = roots.split(os.pathsep)
    found: list[ModelInfo] = []
    problems: list[str] = []

    def visit(path: Path, name: str, depth: int) -> None:
        try:
            if (path / CARD_FILE).is_file():
                found.append(_info(name or path.name, [path], path))
                return
            children = sorted(d for d in path.iterdir() if d.is_dir())
            members = [d for d in children if (d / CARD_FILE).is_file()]
            if members and len(members) == len(children):
                info = _info(name or path.name, members, path)
                if len({(c.task, c.name) for c in info.cards}) == 1:
                    found.append(info)
                    return
            if depth < 3:
                for d in children:
                    visit(d, f"{name}/{d.name}" if name else d.name, depth + 1)
        except (OSError, HyperFusionError) as exc:
            problems.append(f"{path}: unreadable model card ({exc})")

    for root in filter(None, (str(r).strip() for r in roots)):
        path = Path(root).expanduser()
        if not path.is_dir():
            problems.append(f"{path}: no such model directory")
            continue
        visit(path, "", 0)
    return found, problems
