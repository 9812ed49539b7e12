"""Torch datasets for both tasks: (image, tabular, target) per subject.

* Task ``ad``: tabular = the fitted :class:`~hyperfusion.data.tabular.TabularPreprocessor`'s 16 inputs; target =
  class index (CN 0, MCI 1, AD 2).
* Task ``brain_age``: tabular = sex one-hot [Female, Male] (the paper's hypernetwork input); target = age, years.

Images come through the :class:`~hyperfusion.data.volume_cache.VolumeCache` as normalised model inputs of shape
(n_views, 1, D, H, W). ``views="random"`` draws one hemisphere per sample (training: the paper's augmentation),
giving (1, D, H, W); ``views="all"`` returns every view (evaluation averages the softmax over both), giving
(n_views, 1, D, H, W); an integer picks one view. ``tabular_only=True`` never touches the scans: the image is an
empty tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from hyperfusion.data.cohort import Cohort
from hyperfusion.data.geometry import Geometry
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.data.tabular import TabularPreprocessor
from hyperfusion.data.volume_cache import VolumeCache
from hyperfusion.errors import DataError

Task = Literal["ad", "brain_age"]


def sex_one_hot(rows: pd.DataFrame) -> np.ndarray:
    """Brain-age condition: [Female, Male] one-hot, float32 (N, 2); unknown sex is refused."""
    sex = rows["PTGENDER"].to_numpy(dtype=float)
    if np.isnan(sex).any():
        raise DataError(
            f"{int(np.isnan(sex).sum())} subject(s) have no PTGENDER; brain age is conditioned on sex"
        )
    return np.stack([sex == 0.0, sex == 1.0], axis=1).astype(np.float32)


class CohortDataset(Dataset):
    """Subjects ``indices`` of a cohort as (image, tabular, target) tensors.

    Args:
        cohort: the loaded cohort.
        indices: row positions in ``cohort.table`` (e.g. one partition of the split).
        task: "ad" or "brain_age".
        preprocessor: fitted on the training rows (task "ad"; ignored for brain age).
        geometry: the model's input geometry (not needed with ``tabular_only``).
        cache: where preprocessed crops live; default a :class:`VolumeCache` at its default root.
        views: "random" (training), "all" (evaluation) or a view index.
        tabular_only: never read scans; the image is ``torch.empty(0)``.
        keep_in_memory: keep each subject's views after the first read (training reads every subject once per
            epoch; a 2 mm demo cohort's views take ~0.4 MB a subject).
    """

    def __init__(
        self,
        cohort: Cohort,
        indices: Sequence[int] | np.ndarray,
        *,
        task: Task = "ad",
        preprocessor: TabularPreprocessor | None = None,
        geometry: Geometry | None = None,
        cache: VolumeCache | None = None,
        views: Literal["random", "all"] | int = "random",
        tabular_only: bool = False,
        keep_in_memory: bool = False,
    ) -> None:
        self._memory: dict[int, torch.Tensor] | None = {} if keep_in_memory else None
        self.indices = np.asarray(indices, dtype=np.int64)
        rows = cohort.table.iloc[self.indices]
        self.ptids = rows["PTID"].tolist()
        self.task = task
        self.views = views
        self.tabular_only = tabular_only
        if task == "ad":
            if preprocessor is None:
                raise ValueError("task 'ad' needs a TabularPreprocessor fitted on the training rows")
            self.tabular = torch.from_numpy(np.asarray(preprocessor.transform(rows), dtype=np.float32))
            index = {c: i for i, c in enumerate(CLASS_NAMES)}
            self.targets = torch.tensor([index[d] for d in rows["DX"]], dtype=torch.long)
        elif task == "brain_age":
            self.tabular = torch.from_numpy(sex_one_hot(rows))
            age = rows["AGE"].to_numpy(dtype=np.float32)
            if np.isnan(age).any():
                raise DataError(f"{int(np.isnan(age).sum())} subject(s) have no AGE, the brain-age target")
            self.targets = torch.from_numpy(age)
        else:
            raise ValueError(f"task must be 'ad' or 'brain_age', not {task!r}")
        if tabular_only:
            self.image_paths: list[str] = []
            return
        if geometry is None:
            raise ValueError("a geometry is needed unless tabular_only=True")
        paths = rows["image_path"].tolist()
        lacking = [p for p, path in zip(self.ptids, paths) if not isinstance(path, str)]
        if lacking:
            raise DataError(
                f"{len(lacking)} of {len(paths)} subjects have no scan (e.g. {lacking[:3]}); add "
                "images/PTID.nii.gz, drop them, or train a tabular-only model"
            )
        if isinstance(views, int) and not 0 <= views < geometry.n_views:
            raise ValueError(f"view {views} does not exist; the geometry has {geometry.n_views} view(s)")
        self.geometry = geometry
        self.cache = cache if cache is not None else VolumeCache()
        self.image_paths = paths

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, i: int) -> torch.Tensor:
        """All views of subject ``i``: (n_views, 1, D, H, W) float32."""
        if self._memory is not None and i in self._memory:
            return self._memory[i]
        views = torch.from_numpy(self.cache.get(self.image_paths[i], self.geometry))
        if self._memory is not None:
            self._memory[i] = views
        return views

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.tabular_only:
            image = torch.empty(0)
        else:
            all_views = self.image(i)
            if self.views == "all":
                image = all_views
            elif self.views == "random":
                image = all_views[int(torch.randint(all_views.shape[0], ()))]
            else:
                image = all_views[int(self.views)]
        return image, self.tabular[i], self.targets[i]
