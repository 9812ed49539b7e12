"""``hyperfusion report``: one subject's record, predictions and attribution figure as HTML or JSON."""

import base64
import json

from hyperfusion.cli import main
from hyperfusion.report import RESEARCH_NOTICE, html_report


def test_report_of_a_cohort_subject_as_html_and_json(env, tmp_path, capsys):
    ptid = env.cohort.table["PTID"].iloc[0]
    models = [str(env.dirs["image_only"]), str(env.dirs["apoe4"])]
    argv = ["report", "--models", *models, "--data", str(env.cohort.path), "--subject", ptid]
    assert main([*argv, "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert ptid in page and RESEARCH_NOTICE in page and "data:image/png;base64," in page
    assert "image_only" in page and "apoe4" in page and "P(AD)" in page
    printed = json.loads(capsys.readouterr().out)
    assert {row["model"] for row in printed["predictions"]} == {"image_only", "apoe4"}
    assert main([*argv, "--out", str(tmp_path / "r.json"), "--method", "none"]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["scenario"]["subject"] == ptid and "attribution_png" not in data
    by_model = {row["model"]: row for row in data["predictions"]}
    apoe4 = env.subject(0)[1]["APOE4"]  # the hand-wired model: AD exactly when APOE4 >= 2
    assert by_model["apoe4"]["predicted"] == ("AD" if apoe4 is not None and apoe4 >= 2 else "MCI")


def test_html_report_escapes_and_embeds():
    png = b"\x89PNG\r\n\x1a\nfake"
    page = html_report({"subject": "<b>x</b>"}, {"attribution_png": png, "record": [{"a": None}]}, True)
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page.replace(RESEARCH_NOTICE, "")
    assert base64.b64encode(png).decode() in page and "SYNTHETIC" in page and "<td>missing</td>" in page
