"""The real-photograph patch folder (tfvae.data.photos, tfvae-photos) on photographs made here."""

import os
import re

import numpy as np
import pytest
from PIL import Image

from tests.factory import run_command
from tfvae import data
from tfvae.data import folder, photos

NAME = re.compile(r"(\w+)-y(\d{4})-x(\d{4})\.png")


def _photographs():
    """Three random 'photographs' of sizes that leave partial windows at the edges."""
    rng = np.random.default_rng(0)
    shapes = {"alpha": (150, 100), "beta_two": (128, 97), "gamma": (260, 64)}
    return [
        photos.Photograph(name, rng.integers(0, 256, (*shape, 3), dtype=np.uint8), "test")
        for name, shape in shapes.items()
    ]


def _partition(path):
    with open(os.path.join(path, photos.PARTITION_FILE)) as f:
        return dict(line.split() for line in f)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    # A partition file beside the folder that names none of its patches: the folder's own wins.
    (root / photos.PARTITION_FILE).write_text("000001.jpg 2\n")
    return photos.build(str(root / "patches"), _photographs(), stride=8, margin=4)


def test_every_patch_is_its_photographs_pixels_at_its_origin(built):
    source = {p.name: p.pixels for p in _photographs()}
    partition = _partition(built.path)
    pngs = sorted(n for n in os.listdir(built.path) if n.endswith(".png"))
    assert pngs == sorted(partition) and len(pngs) > 100
    for file in pngs:
        name, y, x = NAME.fullmatch(file).groups()
        y, x = int(y), int(x)
        patch = np.asarray(Image.open(os.path.join(built.path, file)))
        assert patch.shape == (32, 32, 3) and patch.dtype == np.uint8
        np.testing.assert_array_equal(patch, source[name][y : y + 32, x : x + 32])


def test_validation_patches_share_no_pixel_with_training_patches(built):
    split_of = _partition(built.path)
    boxes = {"0": {}, "1": {}}  # split id -> photograph -> [(y, x)]
    for file, split in split_of.items():
        name, y, x = NAME.fullmatch(file).groups()
        boxes[split].setdefault(name, []).append((int(y), int(x)))
    assert set(boxes["0"]) == set(boxes["1"]) == {"alpha", "beta_two", "gamma"}
    for name, validation in boxes["1"].items():
        train = np.array(boxes["0"][name])  # [N, 2]
        rows = {y + i for y, _ in validation for i in range(32)}
        for y, x in validation:  # every validation tile: no training window within 4 rows
            overlaps_cols = (train[:, 1] < x + 32) & (train[:, 1] + 32 > x)
            near_rows = (train[:, 0] < y + 32 + 4) & (train[:, 0] + 32 + 4 > y)
            assert not np.any(overlaps_cols & near_rows), (name, y, x)
        assert len(rows) == 32 * len({y for y, _ in validation})  # tiles side by side, disjoint
        assert len(set(validation)) == len(validation)


def test_the_manifest_counts_what_the_folder_holds(built):
    split_ids = list(_partition(built.path).values())
    assert built.manifest["train_patches"] == split_ids.count("0")
    assert built.manifest["validation_patches"] == split_ids.count("1") == len(built.validation)
    alpha, _, gamma = built.manifest["photographs"]
    # alpha, 150x100: a quarter of 150 rows is one whole tile, centred at (150 - 32) // 2 = 59;
    # tiles at x = 2, 34, 66 (centred); training rows 0, 8, 16 above and 95, 103, 111 below
    # (4 rows away), at x = 0, 8, ..., 64.
    assert alpha["validation_rows"] == [59, 91]
    assert (alpha["validation_patches"], alpha["train_patches"]) == (3, 6 * 9)
    assert gamma["validation_rows"] == [98, 162]  # 260 / 4 = 65 rows: two tiles
    assert gamma["validation_patches"] == 2 * 2


def test_the_folder_loader_reads_exactly_the_two_splits(built, tmp_path):
    partition = _partition(built.path)
    for split, split_id in (("train", "0"), ("validation", "1"), ("test", "2")):
        names, labels, _ = folder.split_files(built.path, split)
        assert names == sorted(n for n, s in partition.items() if s == split_id)
        assert labels is None
    validation = data.load(
        f"folder:{built.path}", "validation", str(tmp_path), image_size=32, crop="none"
    )
    images = np.stack([ex["image"].numpy() for ex in validation])
    np.testing.assert_array_equal(images, built.validation)


def test_a_second_build_is_byte_identical_and_replaces_only_when_asked(built, tmp_path):
    again = photos.build(str(tmp_path / "again"), _photographs(), stride=8, margin=4)
    names = sorted(os.listdir(built.path))
    assert names == sorted(os.listdir(again.path))
    for name in names:
        with (
            open(os.path.join(built.path, name), "rb") as a,
            open(os.path.join(again.path, name), "rb") as b,
        ):
            assert a.read() == b.read(), name
    with pytest.raises(ValueError, match="exists; give overwrite=True"):
        photos.build(again.path, _photographs()[:1])
    photos.build(again.path, _photographs()[:1], stride=32, overwrite=True)
    assert all(n.startswith("alpha-") for n in os.listdir(again.path) if n.endswith(".png"))


def test_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.png").write_bytes(b"kept")
    written = []

    def png_then_full_disk(patch):
        if len(written) == 50:
            raise OSError(28, "No space left on device")
        written.append(patch)
        return b"png"

    monkeypatch.setattr(photos, "_png", png_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        photos.build(str(tmp_path / "out"), _photographs(), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(tmp_path / "out") == ["old.png"]
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match=r"a_file/out cannot be written: .*a_file: File exists"):
        photos.build(str(tmp_path / "a_file" / "out"), _photographs())
    (tmp_path / "a_file").unlink()
    monkeypatch.undo()
    (tmp_path / "out" / "old.png").unlink()
    (tmp_path / "out").rmdir()
    tiny = photos.Photograph("tiny", np.zeros([40, 40, 3], np.uint8))
    with pytest.raises(ValueError, match="'tiny' \\[40, 40, 3\\] is too small"):
        photos.build(str(tmp_path / "out"), [*_photographs(), tiny])
    with pytest.raises(ValueError, match="Stride 33"):
        photos.build(str(tmp_path / "out"), _photographs(), stride=33)
    assert os.listdir(tmp_path) == []


def test_bands_and_windows_stay_apart_on_any_size():
    for height in range(32 + 2 * 8 + 64, 700, 37):
        for stride in (1, 8, 16, 32):
            origins = photos.patch_origins(height, 75, stride, margin=8)
            top, bottom = photos.validation_band(height)
            assert (bottom - top) % 32 == 0 and bottom - top >= 0.25 * height - 32
            assert {y for y, _ in origins["validation"]} == set(range(top, bottom, 32))
            for y, x in origins["train"]:
                assert y + 32 <= top - 8 or y >= bottom + 8
                assert 0 <= y <= height - 32 and 0 <= x <= 75 - 32


def test_packages_not_installed_or_files_not_shipped_are_named(monkeypatch):
    monkeypatch.setattr(
        photos, "SHIPPED", (
            ("absent", "no-such-distribution-tfvae", "no_such_module", "a.png"),
            ("unshipped", "matplotlib", "matplotlib", "mpl-data/sample_data/no_such.jpg"),
            *photos.SHIPPED[-1:],
        ),
    )  # fmt: skip
    found, skipped = photos.shipped_photographs()
    assert [p.name for p in found] == ["grace_hopper"]
    assert found[0].pixels.shape == (600, 512, 3) and found[0].source.startswith("matplotlib ")
    assert skipped[0] == "absent: no-such-distribution-tfvae is not installed"
    assert re.fullmatch(r"unshipped: matplotlib \S+ does not ship \S+no_such.jpg", skipped[1])


def test_the_command_builds_from_the_installed_packages(tmp_path):
    out = tmp_path / "photos"
    done = run_command("photos", f"--output={out}", "--stride=32", "--nobaselines")
    assert done.returncode == 0, done.stderr
    for name in ("china", "flower", "grace_hopper"):  # scikit-learn and matplotlib: always there
        assert re.search(rf"^{name}: .*: \d+ train, \d+ validation patches$", done.stdout, re.M)
    assert re.search(r"^wrote \d+ training and \d+ validation patches", done.stdout, re.M)
    again = run_command("photos", f"--output={out}", "--nobaselines")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.strip().count("\n") == 0 and "give --overwrite" in again.stderr
    file = tmp_path / "file"
    file.write_text("")
    refused = run_command("photos", f"--output={file}")
    assert refused.returncode == 1 and "it is a file" in refused.stderr


def test_the_photos_flagfile_reads_the_patches_uncropped(built, tmp_path):
    from tfvae import config as config_lib
    from tfvae.cli import common, train

    flagfile = os.path.join(os.path.dirname(__file__), "..", "configs", "hierarchical_photos.flags")
    argv = ["tfvae-train", f"--flagfile={flagfile}", f"--dataset=folder:{built.path}"]
    config = config_lib.from_flags(common.parse(argv, train.FLAG_DEFINITIONS).values)
    assert (config.architecture, config.image_size, config.crop) == ("hierarchical", 32, "none")
    config = config_lib.Config(**{**config.to_dict(), "data_dir": str(tmp_path)})
    validation = data.load_config_split(config, "validation", 0)
    images = np.stack([ex["image"].numpy() for ex in validation])
    np.testing.assert_array_equal(images, built.validation)  # every pixel, no crop, no resize
