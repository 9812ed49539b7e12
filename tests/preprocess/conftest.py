"""Real T1 scans for the preprocessing tests, fetched at test set-up by scripts/fetch_real_scans.sh (run by
scripts/test.sh and so by CI); tests that need them skip, saying why, when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

REAL = Path(os.environ.get("HYPERFUSION_REAL_SCANS", Path(__file__).resolve().parents[1] / ".real_scans"))

#: A known rigid transform (world mm -> world mm): 12°, −8°, 20° about x, y, z and a (15, −25, 30) mm shift,
#: as if the head lay in a scanner's coordinates rather than MNI152's.
MOVE = np.eye(4)
MOVE[:3, :3] = Rotation.from_euler("xyz", [12, -8, 20], degrees=True).as_matrix()
MOVE[:3, 3] = [15, -25, 30]


@pytest.fixture(scope="session")
def real_scans() -> Path:
    if not ((REAL / "ch2.nii.gz").is_file() and (REAL / "ch2bet.nii.gz").is_file()):
        pytest.skip(
            f"real scans absent from {REAL}: run `bash scripts/fetch_real_scans.sh` (scripts/test.sh does)"
        )
    pytest.importorskip("deepbet", reason="deepbet absent: pip install --no-deps -r requirements-nodeps.txt")
    return REAL


def moved(img: nib.Nifti1Image, move: np.ndarray = MOVE) -> nib.Nifti1Image:
    """The same voxels, placed in the world by ``move`` (the header says 'scanner', code 1)."""
    affine = move @ img.affine
    out = nib.Nifti1Image(np.asarray(img.dataobj), affine)
    out.header.set_sform(affine, code=1)
    out.header.set_qform(affine, code=1)
    return out
