"""CelebA through TFDS, a folder and a zip, on a small CelebA-like tree made here."""

import os
import shutil
import zipfile
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfvae import data
from tfvae.data import celeba

NUM_GOOD = 24  # 000001.jpg .. 000024.jpg, partition: 16 train, 4 validation, 4 test


def _face(seed, mode="RGB", size=(178, 218)):
    """A smooth coloured pattern of `size` (width, height), different for every seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    wave = 0.5 + 0.5 * np.sin(x / 17.0 + y / 23.0 + seed)  # [H, W]
    rgb = (rng.uniform(30, 255, 3) * wave[..., None]).astype(np.uint8)  # [H, W, 3]
    return Image.fromarray(rgb).convert(mode)


@pytest.fixture(scope="module")
def celeba_tree(tmp_path_factory):
    """root/img_align_celeba/*.jpg, root/img_align_celeba.zip, partition and attribute files."""
    root = tmp_path_factory.mktemp("celeba")
    images = root / "img_align_celeba"
    images.mkdir()
    names = [f"{i:06d}.jpg" for i in range(1, NUM_GOOD + 1)]
    for i, name in enumerate(names):
        mode = "L" if i == 3 else "RGB"  # one grayscale JPEG: converted, kept
        _face(i, mode).save(images / name, quality=90)
    _face(99, "RGBA").save(images / "000025.png")  # RGBA: alpha dropped, kept
    (images / "000026.jpg").write_bytes(b"not an image at all")  # skipped
    good = (images / "000001.jpg").read_bytes()
    (images / "000027.jpg").write_bytes(good[: len(good) // 3])  # truncated: skipped
    _face(5, size=(100, 120)).save(images / "000028.jpg")  # smaller than the crop: skipped
    all_names = names + ["000025.png", "000026.jpg", "000027.jpg", "000028.jpg"]
    split_of = {n: 0 for n in all_names}
    for i, name in enumerate(names):
        split_of[name] = 0 if i < 16 else 1 if i < 20 else 2
    (root / celeba.PARTITION_FILE).write_text("".join(f"{n} {split_of[n]}\n" for n in all_names))
    rows = [" ".join(["1" if (i + j) % 3 == 0 else "-1" for j in range(40)]) for i in range(28)]
    (root / celeba.ATTRIBUTES_FILE).write_text(
        f"{len(all_names)}\n{' '.join(celeba.ATTRIBUTE_NAMES)}\n"
        + "".join(f"{n} {r}\n" for n, r in zip(all_names, rows, strict=True))
    )
    with zipfile.ZipFile(root / "img_align_celeba.zip", "w") as archive:
        for name in sorted(os.listdir(images)):
            archive.write(images / name, f"img_align_celeba/{name}")
    return root


def _arrays(dataset):
    items = list(dataset.as_numpy_iterator())
    return np.stack([i["image"] for i in items]), np.stack([i["labels"] for i in items])


def test_folder_uses_the_official_split_and_attributes_and_skips_bad_files(
    celeba_tree, tmp_path, capfd
):
    source = f"folder:{celeba_tree / 'img_align_celeba'}"
    images, labels = _arrays(data.load(source, "train", str(tmp_path), 32))
    assert images.shape == (17, 32, 32, 3) and images.dtype == np.uint8  # 16 + the RGBA png
    assert labels.shape == (17, 40)
    np.testing.assert_array_equal(labels[0], [(j % 3 == 0) for j in range(40)])  # 000001.jpg
    warning = [line for line in capfd.readouterr().err.splitlines() if "skipped" in line]
    assert len(warning) == 1
    assert "skipped 3 of 20 files" in warning[0] and "000026.jpg, 000027.jpg" in warning[0]
    assert len(list(data.load(source, "validation", str(tmp_path), 32))) == 4
    gray = images[3].astype(int)
    assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 1  # the grayscale face became RGB


def test_zip_read_in_place_equals_the_folder(celeba_tree, tmp_path):
    alone = tmp_path / "zip_only"  # the zip and its metadata, no extracted folder beside it
    alone.mkdir()
    for name in ("img_align_celeba.zip", celeba.PARTITION_FILE, celeba.ATTRIBUTES_FILE):
        shutil.copy(celeba_tree / name, alone / name)
    before = sorted(str(p) for p in alone.rglob("*"))
    folder = _arrays(
        data.load(f"folder:{celeba_tree / 'img_align_celeba'}", "test", str(tmp_path), 16)
    )
    zipped = _arrays(
        data.load(f"folder:{alone / 'img_align_celeba.zip'}", "test", str(tmp_path), 16)
    )
    for a, b in zip(folder, zipped, strict=True):
        np.testing.assert_array_equal(a, b)
    assert sorted(str(p) for p in alone.rglob("*")) == before  # nothing was extracted


def test_subset_crops_and_the_prepared_cache(celeba_tree, tmp_path):
    source = f"folder:{celeba_tree / 'img_align_celeba'}"
    first5 = _arrays(data.load(source, "train", str(tmp_path), 16, num_images=5))[0]
    all_train = _arrays(data.load(source, "train", str(tmp_path), 16))[0]
    np.testing.assert_array_equal(first5, all_train[:5])
    cached = len(os.listdir(tmp_path / "prepared"))
    again = _arrays(data.load(source, "train", str(tmp_path), 16, num_images=5))[0]
    np.testing.assert_array_equal(again, first5)
    assert len(os.listdir(tmp_path / "prepared")) == cached  # served from the cache
    crops = [
        _arrays(data.load(source, "train", str(tmp_path), 16, num_images=2, crop=c))[0]
        for c in ("realnvp", "center", "none")
    ]
    assert not np.array_equal(crops[0], crops[1]) and not np.array_equal(crops[1], crops[2])
    original = tf.io.decode_jpeg(
        tf.io.read_file(str(celeba_tree / "img_align_celeba" / "000001.jpg"))
    )
    expected = data.preprocess(original, 16, (40, 15, 148, 148)).numpy()
    np.testing.assert_array_equal(crops[0][0], expected)  # the Real NVP box, then resize


def test_a_folder_without_partition_is_split_by_a_seeded_hash(tmp_path):
    images = tmp_path / "faces"
    images.mkdir()
    for i in range(40):
        _face(i).save(images / f"face{i:02d}.jpg")
    sizes = {
        s: len(list(data.load(f"folder:{images}", s, str(tmp_path), 8, crop="none")))
        for s in ("train", "validation", "test")
    }
    assert sum(sizes.values()) == 40 and sizes["train"] > sizes["validation"]
    other_seed = len(
        list(data.load(f"folder:{images}", "test", str(tmp_path), 8, crop="none", seed=1))
    )
    assert other_seed != sizes["test"]  # a different seed draws another split
    labels = next(iter(data.load(f"folder:{images}", "train", str(tmp_path), 8, crop="none")))
    assert labels["labels"].shape == (0,)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p / "missing", "no such directory or zip file"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no image files"),
        (lambda p: _empty_zip(p), "holds no image files"),
    ],
)
def test_unusable_sources_are_one_clear_line(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        data.load(f"folder:{make(tmp_path)}", "train", str(tmp_path))


def _empty_zip(path):
    with zipfile.ZipFile(path / "notes.zip", "w") as archive:
        archive.writestr("readme.txt", "no images here")
    return path / "notes.zip"


def test_a_split_with_fewer_images_than_asked_is_refused(celeba_tree, tmp_path):
    with pytest.raises(ValueError, match="Asked for 10 validation images of folder:.*only 4"):
        data.load(
            f"folder:{celeba_tree / 'img_align_celeba'}", "validation", str(tmp_path), 16, size=10
        )


def test_tfds_offline_names_the_files_and_the_alternative(tmp_path):
    offline = mock.patch.object(celeba, "download_host_reachable", return_value=False)
    with offline, pytest.raises(ValueError) as error:
        data.load("celeb_a", "train", str(tmp_path))
    message = str(error.value)
    assert "\n" not in message and "img_align_celeba.zip" in message
    assert str(tmp_path / "tensorflow_datasets" / "downloads" / "manual") in message
    assert "--dataset=folder:" in message


def test_tfds_and_folder_give_byte_identical_images(celeba_tree, tmp_path):
    import tensorflow_datasets as tfds

    extra = tmp_path / "metadata"
    extra.mkdir()
    names = sorted(n for n in os.listdir(celeba_tree / "img_align_celeba"))
    (extra / "landmarks.txt").write_text(
        f"{len(names)}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
        "leftmouth_y rightmouth_x rightmouth_y\n"
        + "".join(f"{n} {' '.join(['1'] * 10)}\n" for n in names)
    )
    (extra / "identity.txt").write_text("".join(f"{n} 7\n" for n in names))
    # TFDS's only download is replaced by the files made here; its real builder does the rest.
    good = [n for n in names if n.endswith(".jpg") and int(n[:6]) <= NUM_GOOD]
    with zipfile.ZipFile(tmp_path / "good.zip", "w") as archive:
        for name in good:  # TFDS itself would fail on the corrupt files
            archive.write(celeba_tree / "img_align_celeba" / name, f"img_align_celeba/{name}")
    partition = tmp_path / "partition.txt"
    partition.write_text(
        "".join(
            line
            for line in (celeba_tree / celeba.PARTITION_FILE).read_text().splitlines(True)
            if line.split()[0] in good
        )
    )
    files = {
        "img_align_celeba": tmp_path / "good.zip",
        "list_eval_partition": partition,
        "list_attr_celeba": celeba_tree / celeba.ATTRIBUTES_FILE,
        "landmarks_celeba": extra / "landmarks.txt",
        "identity_celeba": extra / "identity.txt",
    }
    with (
        mock.patch.object(tfds.download.DownloadManager, "download", return_value=files),
        mock.patch.object(celeba, "download_host_reachable", return_value=True),
    ):
        via_tfds = _arrays(data.load("celeb_a", "validation", str(tmp_path), 64))
    via_folder = _arrays(
        data.load(f"folder:{celeba_tree / 'img_align_celeba.zip'}", "validation", str(tmp_path), 64)
    )
    order_tfds = np.lexsort(via_tfds[0].reshape(len(via_tfds[0]), -1).T)
    order_folder = np.lexsort(via_folder[0].reshape(len(via_folder[0]), -1).T)
    np.testing.assert_array_equal(via_tfds[0][order_tfds], via_folder[0][order_folder])
    np.testing.assert_array_equal(via_tfds[1][order_tfds], via_folder[1][order_folder])
