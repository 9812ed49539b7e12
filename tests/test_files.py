"""hyperfusion.files: paths as a page may show them."""

from pathlib import Path

from hyperfusion.files import shown_path


def test_shown_paths_are_never_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "assets" / "demo").mkdir(parents=True)
    assert (
        shown_path(tmp_path / "assets" / "demo" / "models") == "assets/demo/models"
    )  # under the working dir
    assert shown_path("relative/dir") == "relative/dir"
    assert shown_path(Path.home() / "cohorts" / "mine") == "~/cohorts/mine"
    assert (
        shown_path("/build/machine/assets/demo/cohorts/ad_test") == "…/cohorts/ad_test"
    )  # another machine's
    assert shown_path(tmp_path / "x" / "y", tmp_path / "x") == "x/y"  # relative to a root, named by it
    assert shown_path(None) == ""
