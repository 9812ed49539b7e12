"""Many subjects: a folder of subjects or a table of scan paths -> a cohort directory ``load_cohort`` reads.

``OUT/images/PTID.nii.gz`` are the preprocessed scans; ``OUT/preprocess/PTID/`` holds each subject's mask,
transform, qc.json and qc.png; ``OUT/preprocess/summary.csv`` one line per subject (status, QC verdict, the
error of a failed subject). Given a table, its rows (less the path column) become ``OUT/cohort.csv``.
Subjects run in parallel processes; a subject whose outputs are complete is skipped (resumable); a failing
subject is reported and the others go on.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from hyperfusion.errors import DataError, HyperFusionError

PATH_COLUMNS = ("scan", "image", "image_path", "path", "t1")
_NIFTI = (".nii", ".nii.gz")


def is_batch(source: str | Path) -> bool:
    """A table, or a folder of subjects (sub-folders or NIfTI files), rather than one scan or DICOM series."""
    path = Path(source)
    if path.is_file():
        return path.suffix.lower() in (".csv", ".tsv")
    if not path.is_dir():
        return False
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    return bool(entries) and all(p.is_dir() or p.name.lower().endswith(_NIFTI) for p in entries)


def subjects(source: str | Path, path_column: str | None = None) -> tuple[dict[str, Path], list[dict] | None]:
    """PTID -> raw scan (file or DICOM folder), and the table's rows when ``source`` is a table."""
    path = Path(source)
    if path.is_dir():
        found = {}
        for p in sorted(path.iterdir()):
            if p.name.startswith("."):
                continue
            ptid = p.name[: -len(".nii.gz")] if p.name.lower().endswith(".nii.gz") else p.stem
            found[ptid] = p
        return found, None
    text = path.read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    if not rows:
        raise DataError(f"{path}: no rows; give a table with a PTID column and a scan path column")
    columns = list(rows[0])
    column = path_column or next((c for c in columns if c.lower() in PATH_COLUMNS), None)
    if column is None or column not in columns:
        raise DataError(
            f"{path}: no scan path column (looked for {path_column or '/'.join(PATH_COLUMNS)}); "
            "name it with --path-column"
        )
    if "PTID" not in columns:
        raise DataError(f"{path}: no PTID column; each row needs the subject's ID")
    found = {}
    for row in rows:
        scan = Path(row[column])
        found[row["PTID"]] = scan if scan.is_absolute() else path.parent / scan
    return found, [{k: v for k, v in r.items() if k != column} for r in rows]


def _one(ptid: str, scan: str, out: str, options: dict) -> dict:
    import torch

    from hyperfusion.data.preprocess.pipeline import preprocess_scan

    torch.set_num_threads(options.get("threads", 1))
    work = Path(out) / "preprocess" / ptid
    try:
        result = preprocess_scan(scan, work, **options)
    except HyperFusionError as exc:
        return {"PTID": ptid, "status": "failed", "error": str(exc)}
    except Exception as exc:  # one subject's crash must not stop the batch: reported, with its type
        return {"PTID": ptid, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    images = Path(out) / "images"
    images.mkdir(parents=True, exist_ok=True)
    shutil.move(str(result.scan), images / f"{ptid}.nii.gz")
    return {
        "PTID": ptid,
        "status": "done",
        "qc": result.qc["verdict"]["summary"],
        "seconds": result.qc["seconds"]["total"],
    }


def done_already(out: Path, ptid: str) -> bool:
    return (out / "images" / f"{ptid}.nii.gz").is_file() and (out / "preprocess" / ptid / "qc.json").is_file()


def preprocess_batch(
    source: str | Path,
    out_dir: str | Path,
    *,
    workers: int = 1,
    path_column: str | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    **options,
) -> list[dict]:
    """Preprocess every subject of ``source`` into the cohort directory ``out_dir``; returns one status per
    subject (``done``, ``skipped`` when already complete, ``failed`` with the error). ``options`` go to
    :func:`~hyperfusion.data.preprocess.pipeline.preprocess_scan`; ``progress(done, total, status)``."""
    out = Path(out_dir)
    (out / "preprocess").mkdir(parents=True, exist_ok=True)
    found, rows = subjects(source, path_column)
    if rows is not None:
        with (out / "cohort.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        if not (out / "cohort.json").exists():
            (out / "cohort.json").write_text(
                json.dumps({"source": "preprocessed", "preprocessed_from": str(source)})
            )
    options = {"threads": 1, **options}
    statuses = [{"PTID": p, "status": "skipped"} for p in found if done_already(out, p)]
    todo = {p: s for p, s in found.items() if not done_already(out, p)}
    total = len(found)
    for n, status in enumerate(statuses, 1):
        if progress:
            progress(n, total, status)
    if workers <= 1:
        for ptid, scan in todo.items():
            statuses.append(_one(ptid, str(scan), str(out), options))
            if progress:
                progress(len(statuses), total, statuses[-1])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_one, p, str(s), str(out), options) for p, s in todo.items()]
            for future in as_completed(futures):
                statuses.append(future.result())
                if progress:
                    progress(len(statuses), total, statuses[-1])
    order = {p: i for i, p in enumerate(found)}
    statuses.sort(key=lambda s: order[s["PTID"]])
    with (out / "preprocess" / "summary.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["PTID", "status", "qc", "seconds", "error"])
        writer.writeheader()
        writer.writerows(statuses)
    return statuses
