"""The orthogonal views drawn over a scan: the PNG, the shared colour scale, the RAS reorientation."""

import numpy as np

from hyperfusion.explain import views


def test_a_map_is_drawn_over_its_scan_as_one_png_per_request():
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])  # LAS: reoriented to RAS before drawing
    scan = views.ras_volume(np.random.default_rng(0).random((10, 12, 8)), affine)
    assert np.allclose(np.diag(scan.affine)[:3], [2, 2, 2])
    peak = np.zeros((10, 12, 8), np.float32)
    peak[3, 4, 5] = 1.0
    overlay = views.ras_volume(peak, affine).data
    threshold, vmax = views.overlay_limits(overlay, 90)
    png = views.render_rows(scan, [views.Layer(overlay, "map", threshold=threshold, vmax=vmax)], (4, 4, 4))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    # pooled limits: two maps drawn on one scale share one vmax, which the stronger map sets
    pooled = views.overlay_limits([overlay, 3 * overlay], 50)
    assert views.overlay_limits(overlay, 50)[1] == 1.0 and 2.9 < pooled[1] <= 3.0
    assert scan.index_of(tuple(scan.mm_of((2, 3, 4)))) == (2, 3, 4)
