"""The repository stands alone: nothing in it points to design notes that only its authors had."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Built from pieces so that this file does not match itself.
FORBIDDEN = [name + ".md" for name in ("REFERENCE", "DESIGN", "SYNTHETIC", "STYLE")] + [
    "../" + "shared",
    "roi_mni_" + "table",
    "adni_" + "calibration",
    "adni_" + "correlations",
]


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [ROOT / line for line in listed.splitlines()]
    return [
        p
        for p in paths
        if p.suffix in {".py", ".md", ".sh", ".toml", ".json", ".txt", ".cfg", ".yml", ""}
        and p.is_file()
        and p.stat().st_size < 2_000_000
    ]


def test_no_pointer_to_files_outside_the_repository():
    hits = []
    for path in _tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="ignore")
        for needle in FORBIDDEN:
            if needle in text:
                hits.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not hits, "files outside the repository are referenced:\n" + "\n".join(hits)


def test_docs_named_by_the_code_exist():
    for name in ("architecture", "models", "synthetic", "evaluation"):
        assert (ROOT / "docs" / f"{name}.md").is_file()
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "hyperfusion").rglob("*.py"))
    for ref in ("docs/architecture.md", "docs/models.md", "docs/synthetic.md"):
        assert ref in text  # the code points readers to these pages, so they must stay
