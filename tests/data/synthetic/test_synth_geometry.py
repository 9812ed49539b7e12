import numpy as np

from hyperfusion.data.synthetic.geometry import HIPPOCAMPAL_BOX_MM, output_grid, sample


def test_box_grids_are_exactly_the_paper_box():
    g2, g1 = output_grid(2.0, False), output_grid(1.0, False)
    assert g2.shape == (64, 48, 32) and g1.shape == (128, 96, 64)
    for g in (g1, g2):
        lo = g.affine[:3, 3] - g.spacing / 2
        hi = lo + g.spacing * np.asarray(g.shape)
        np.testing.assert_allclose(lo, [b[0] for b in HIPPOCAMPAL_BOX_MM])
        np.testing.assert_allclose(hi, [b[1] for b in HIPPOCAMPAL_BOX_MM])


def test_whole_brain_grid_covers_the_template():
    g = output_grid(2.0, True)
    assert g.shape == (99, 117, 95)
    world = g.affine @ np.array([0, 0, 0, 1.0])
    assert world[0] <= -98 and world[1] <= -134 and world[2] <= -72


def test_sampling_reads_world_coordinates():
    g = output_grid(2.0, False)
    pts = g.world_points()
    # a volume equal to x + 2y + 3z (mm) sampled anywhere inside returns that function
    vol = (pts[..., 0] + 2 * pts[..., 1] + 3 * pts[..., 2])[None]
    probe = np.array([[[[-10.3, 5.2, -20.9], [30.0, -40.0, 0.5]]]], dtype=np.float32)
    out = sample(vol, g, probe)[0, 0, 0]
    np.testing.assert_allclose(
        out, probe[0, 0, :, 0] + 2 * probe[0, 0, :, 1] + 3 * probe[0, 0, :, 2], atol=1e-3
    )
