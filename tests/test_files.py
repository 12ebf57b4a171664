"""tfvae.files: atomic_output never loses what was already saved."""

import pytest

from tfvae.files import atomic_output


def test_a_file_appears_only_when_its_block_succeeds(tmp_path):
    target = tmp_path / "sub" / "model.keras"
    with atomic_output(target) as partial:
        assert partial.suffix == ".keras" and partial.parent == target.parent
        assert not target.exists()
        partial.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["model.keras"]  # no leftovers


def test_an_existing_file_is_refused_and_kept(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(FileExistsError, match="already exists.*`overwrite=True`"):
        with atomic_output(target) as partial:
            partial.write_text("new")
    assert target.read_text() == "old"


def test_a_failed_overwrite_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target, overwrite=True) as partial:
            partial.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    with atomic_output(target, overwrite=True) as partial:
        partial.write_text("new")
    assert target.read_text() == "new"


def test_folders_are_replaced_whole(tmp_path):
    target = tmp_path / "saved_model"
    with atomic_output(target) as partial:
        partial.mkdir()
        (partial / "saved_model.pb").write_text("1")
    with atomic_output(target, overwrite=True) as partial:
        partial.mkdir()
        (partial / "other.pb").write_text("2")
    assert [p.name for p in target.iterdir()] == ["other.pb"]


def test_a_block_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Nothing was written"):
        with atomic_output(tmp_path / "x.png"):
            pass
