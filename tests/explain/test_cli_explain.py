"""``hyperfusion predict`` and ``hyperfusion explain`` (the commands of hyperfusion/cli.py this issue builds)."""

import json

import nibabel as nib
import numpy as np
import pytest

from hyperfusion.cli import main


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_a_scan_and_a_record(env, tmp_path, capsys):
    scan, record = env.subject(3)
    row = tmp_path / "row.json"
    row.write_text(json.dumps(record))
    code, out, _ = _run(
        capsys, ["predict", "--model", str(env.dirs["hyperfusion"]), "--image", scan, "--tabular", str(row)]
    )
    assert code == 0
    result = json.loads(out)
    expected = env.predictor.predict(scan, record, ["hyperfusion"])["hyperfusion"].value[0]
    np.testing.assert_allclose(list(result["probabilities"].values()), expected, rtol=1e-5)
    assert result["predicted_class"] == ["CN", "MCI", "AD"][int(expected.argmax())]
    # the same subject from the cohort; an ensemble reports its spread
    code, out, _ = _run(
        capsys,
        [
            "predict",
            "--model",
            str(env.dirs["hf_ensemble"]),
            "--data",
            str(env.cohort.path),
            "--subject",
            env.cohort.table["PTID"].iloc[3],
        ],
    )
    assert code == 0 and json.loads(out)["members"] == 2


def test_predict_refusals_are_one_line(env, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, _, err = _run(capsys, ["predict", "--model", str(env.dirs["hyperfusion"]), "--tabular", str(bad)])
    assert code == 2 and "JSON object" in err and len(err.strip().splitlines()) == 1
    row = tmp_path / "row.json"
    row.write_text(json.dumps({"AGE": 70}))
    code, _, err = _run(capsys, ["predict", "--model", str(env.dirs["hyperfusion"]), "--tabular", str(row)])
    assert code == 2 and "--image" in err
    code, out, _ = _run(capsys, ["predict", "--model", str(env.dirs["tabular_only"]), "--tabular", str(row)])
    assert code == 0 and "probabilities" in json.loads(out)


@pytest.mark.parametrize("method", ["grad_cam", "integrated_gradients"])
def test_explain_writes_the_map_on_the_scans_grid(env, tmp_path, capsys, method):
    scan, record = env.subject(4)
    row = tmp_path / "row.json"
    row.write_text(json.dumps(record))
    out_map, regions = tmp_path / "map.nii.gz", tmp_path / "regions.json"
    code, out, _ = _run(
        capsys,
        [
            "explain",
            "--model",
            str(env.dirs["hyperfusion"]),
            "--image",
            scan,
            "--tabular",
            str(row),
            "--method",
            method,
            "--out",
            str(out_map),
            "--regions",
            str(regions),
            "--steps",
            "8",
            "--target",
            "AD",
            "--baseline",
            "blur",
            "--quiet",
        ]
        if method == "integrated_gradients"
        else [
            "explain",
            "--model",
            str(env.dirs["hyperfusion"]),
            "--image",
            scan,
            "--tabular",
            str(row),
            "--method",
            method,
            "--out",
            str(out_map),
            "--regions",
            str(regions),
            "--target",
            "2",
            "--quiet",
        ],
    )
    assert code == 0
    result = json.loads(out)
    img, source = nib.load(out_map), nib.load(scan)
    assert img.shape == source.shape
    np.testing.assert_allclose(img.affine, source.affine)
    assert result["target"] == "AD" and result["method"] == method
    assert json.loads(regions.read_text())["attribution"]["method"] == method
    if method == "integrated_gradients":
        assert result["baseline"] == {"kind": "blur", "sigma_mm": 8.0} and result["settings"]["n_steps"] == 8
        assert result["relative_delta"] is not None
    else:
        assert result["coarse"]["shape"] == [1, 2, 1]


def test_explain_a_record_difference(env, tmp_path, capsys):
    scan, record = env.subject(4)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({**record, "APOE4": 0}))
    b.write_text(json.dumps({**record, "APOE4": 2}))
    code, out, _ = _run(
        capsys,
        [
            "explain",
            "--model",
            str(env.dirs["image_only"]),
            "--image",
            scan,
            "--tabular",
            str(a),
            "--compare",
            str(b),
            "--method",
            "saliency",
            "--out",
            str(tmp_path / "diff.nii.gz"),
            "--quiet",
        ],
    )
    assert code == 0 and json.loads(out)["method"] == "saliency difference"
    assert (
        np.abs(nib.load(tmp_path / "diff.nii.gz").get_fdata()).max() == 0
    )  # image-only: the record is inert
