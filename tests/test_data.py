import hashlib
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfvae import data
from tfvae.data import builtin


def test_builtin_faces_follow_their_factors():
    factors = np.full((4, 8), 0.5, np.float32)
    factors[:, 6] = 0  # no glasses
    factors[1, 7] = 0.0  # another background
    factors[2, 6] = 1  # glasses
    factors[3, 0] = 1.0  # darkest skin
    images = builtin.draw_faces(factors, np.zeros((4, 2), np.float32)).astype(int)
    assert images.shape == (4, 64, 64, 3)
    corner, centre = (slice(0, 4), slice(0, 4)), (slice(34, 40), slice(20, 26))  # cheek
    assert np.abs(images[1][corner] - images[0][corner]).mean() > 20
    assert np.abs(images[1][centre] - images[0][centre]).mean() == 0  # face unchanged
    assert np.abs(images[2] - images[0]).sum() > 0  # glasses drawn...
    assert np.abs(images[2][corner] - images[0][corner]).sum() == 0  # ...on the face only
    assert images[3][centre].mean() < images[0][centre].mean() - 50  # darker skin
    for chunk in (1, 3):  # a face's pixels do not depend on the faces drawn beside it
        np.testing.assert_array_equal(
            builtin.draw_faces(factors, np.zeros((4, 2), np.float32), chunk=chunk), images
        )


# sha256 of the validation split's uint8 images and float32 labels as first published (v1):
# the data every recorded figure was measured on, whichever way it is drawn and cached.
VALIDATION_SHA256 = (
    "ad86ee1930de458958c1f4408731088712a99f7adf9117a4eec4658a1d584a89",
    "2473af30115d2c8ddd4f68778375751b721f8787e5056bfb54247da8b9cd54ce",
)


def test_builtin_blocks_are_drawn_as_asked_for_and_make_the_published_split(tmp_path):
    cache = tmp_path / "builtin_faces" / "v1" / "validation"
    first, first_labels = builtin.load_arrays("validation", str(tmp_path), size=3)
    assert first.shape == (3, 64, 64, 3) and first_labels.shape == (3, 8)
    assert sorted(os.listdir(cache)) == ["00000.npz"]  # one block of 500, not the split
    images, labels = builtin.load_arrays("validation", str(tmp_path), size=700)
    assert sorted(os.listdir(cache)) == ["00000.npz", "00500.npz"] and len(images) == 700
    np.testing.assert_array_equal(images[:3], first)
    np.savez(cache / "00500.npz", images=first)  # a block of the wrong length: drawn again
    np.testing.assert_array_equal(builtin.load_arrays("validation", str(tmp_path), 700)[0], images)
    images, labels = builtin.load_arrays("validation", str(tmp_path))  # all: from the blocks
    digests = tuple(hashlib.sha256(a.tobytes()).hexdigest() for a in (images, labels))
    assert digests == VALIDATION_SHA256
    np.savez(tmp_path / "builtin_faces" / "v1" / "validation.npz", images=images, labels=labels)
    shutil.rmtree(cache)  # a whole-split cache (earlier versions) is read as it is
    again, again_labels = builtin.load_arrays("validation", str(tmp_path), size=700)
    np.testing.assert_array_equal(again, images[:700])
    np.testing.assert_array_equal(again_labels, labels[:700])
    assert not cache.exists()


def test_builtin_split_is_deterministic_cached_and_labelled(tmp_path):
    first = data.load("builtin", "validation", str(tmp_path), image_size=64, num_images=5)
    cached = tmp_path / "builtin_faces" / "v1" / "validation" / "00000.npz"
    assert cached.exists()
    again = data.load("builtin", "validation", str(tmp_path), image_size=64, num_images=5)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    example = next(iter(first))
    assert example["image"].dtype == tf.uint8 and example["image"].shape == (64, 64, 3)
    assert example["labels"].dtype == tf.float32 and example["labels"].shape == (8,)
    assert len(builtin.LABEL_NAMES) == 8
    labels = np.stack([e["labels"] for e in first])
    assert labels.min() >= 0 and labels.max() <= 1
    assert int(first.cardinality()) == 5


def test_preprocess_resizes_with_antialiasing_to_uint8():
    stripes = tf.tile(tf.constant([[0], [255]], tf.uint8), [32, 64])  # 1-pixel stripes
    image = tf.stack([stripes] * 3, axis=-1)
    small = data.preprocess(image, 16)
    assert small.dtype == tf.uint8 and small.shape == (16, 16, 3)
    np.testing.assert_allclose(small.numpy().astype(float), 127.5, atol=1)  # averaged, not aliased


def test_batches_replay_an_epoch_order_from_its_seed_and_position():
    dataset = tf.data.Dataset.range(20)
    order = [b.numpy().tolist() for b in data.batches(dataset, 4, shuffle_seed=7)]
    assert sorted(sum(order, [])) == list(range(20)) and order[0] != [0, 1, 2, 3]
    resumed = [b.numpy().tolist() for b in data.batches(dataset, 4, shuffle_seed=7, skip_batches=2)]
    assert resumed == order[2:]
    assert [b.numpy().tolist() for b in data.batches(dataset, 6)][-1] == [12, 13, 14, 15, 16, 17]


def test_to_unit_interval_maps_0_255_to_0_1():
    np.testing.assert_allclose(
        data.to_unit_interval(tf.constant([0, 51, 255], tf.uint8)), [0, 0.2, 1]
    )


@pytest.mark.parametrize(
    "name,split,size,message",
    [
        ("builtin", "dev", 0, "Split 'dev' is unknown; accepted: train, validation, test"),
        ("mnist", "train", 0, "Dataset 'mnist' is unknown"),
        ("folder:/nonexistent", "train", 0, "no such directory or zip file"),
        ("builtin", "test", 5000, "Asked for 5000 examples of builtin/test, which has only 1000"),
    ],
)
def test_bad_data_requests_are_one_clear_line(tmp_path, name, split, size, message):
    with pytest.raises(ValueError, match=message):
        data.load(name, split, str(tmp_path.parent / "tfvae-data"), num_images=size)


def test_the_old_keyword_size_still_loads_the_same_images_with_a_warning(data_dir):
    new = data.load("builtin", "validation", str(data_dir), 16, num_images=3)
    with pytest.warns(DeprecationWarning, match="`size=` is deprecated.*`num_images=`"):
        old = data.load("builtin", "validation", str(data_dir), 16, size=3)
    for a, b in zip(new, old, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    with pytest.raises(TypeError, match="Give `num_images` only"):
        data.load("builtin", "validation", str(data_dir), 16, num_images=2, size=3)
