import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hyperfusion.data import TabularPreprocessor, VolumeCache, ad_box, load_cohort, model_input
from hyperfusion.data.datasets import CohortDataset
from hyperfusion.errors import DataError
from tests.conftest import write_image_cohort


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    return write_image_cohort(tmp_path_factory.mktemp("cohort"), 12, seed=4)


def test_ad_dataset_yields_image_tabular_target(cohort_dir, tmp_path):
    cohort = load_cohort(cohort_dir)
    pre = TabularPreprocessor().fit(cohort.table.iloc[:8])
    g = ad_box(4.0)
    ds = CohortDataset(
        cohort, [8, 9, 10], preprocessor=pre, geometry=g, cache=VolumeCache(tmp_path), views="all"
    )
    image, tab, target = ds[1]
    assert image.shape == (2, 1, *g.input_shape) and image.dtype == torch.float32
    np.testing.assert_array_equal(image.numpy(), model_input(cohort.table.loc[9, "image_path"], g))
    assert tab.shape == (16,) and tab.dtype == torch.float32
    np.testing.assert_array_equal(tab.numpy(), pre.transform(cohort.table.iloc[[9]])[0])
    assert int(target) == ["CN", "MCI", "AD"].index(cohort.table.loc[9, "DX"])
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch[0].shape == (3, 2, 1, *g.input_shape) and batch[2].dtype == torch.long


def test_random_view_draws_both_hemispheres(cohort_dir, tmp_path):
    cohort = load_cohort(cohort_dir)
    pre = TabularPreprocessor().fit(cohort.table)
    ds = CohortDataset(cohort, [0], preprocessor=pre, geometry=ad_box(4.0), cache=VolumeCache(tmp_path))
    torch.manual_seed(0)
    means = {round(float(ds[0][0].mean()), 3) for _ in range(20)}
    assert len(means) == 2  # the bright left view and the dim right view both occur
    assert ds[0][0].shape == (1, *ad_box(4.0).input_shape)
    right = CohortDataset(
        cohort, [0], preprocessor=pre, geometry=ad_box(4.0), cache=VolumeCache(tmp_path), views=0
    )
    left = CohortDataset(
        cohort, [0], preprocessor=pre, geometry=ad_box(4.0), cache=VolumeCache(tmp_path), views=1
    )
    assert float(left[0][0].mean()) > float(right[0][0].mean())


def test_tabular_only_never_reads_scans(cohort_dir):
    cohort = load_cohort(cohort_dir)
    cohort.table["image_path"] = "/nonexistent/scan.nii.gz"
    pre = TabularPreprocessor().fit(cohort.table)
    ds = CohortDataset(cohort, range(12), preprocessor=pre, tabular_only=True)
    image, tab, _ = ds[3]
    assert image.numel() == 0 and tab.shape == (16,)


def test_missing_scans_are_reported(cohort_dir, tmp_path):
    cohort = load_cohort(cohort_dir)
    cohort.table.loc[[2, 5], "image_path"] = np.nan
    pre = TabularPreprocessor().fit(cohort.table)
    with pytest.raises(DataError, match="2 of 12 subjects have no scan"):
        CohortDataset(cohort, range(12), preprocessor=pre, geometry=ad_box(4.0), cache=VolumeCache(tmp_path))


def test_brain_age_targets_and_sex_condition(cohort_dir, tmp_path):
    cohort = load_cohort(cohort_dir)
    ds = CohortDataset(cohort, range(12), task="brain_age", tabular_only=True)
    _, tab, age = ds[0]
    sex = cohort.table.loc[0, "PTGENDER"]
    assert tab.tolist() == ([1.0, 0.0] if sex == 0 else [0.0, 1.0])
    assert float(age) == pytest.approx(cohort.table.loc[0, "AGE"])
