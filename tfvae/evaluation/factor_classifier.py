"""A small classifier of the built-in faces' 8 factors: its features and accuracy measure samples.

Trained once, deterministically, on the built-in train split at a run's image size, and cached
under the data directory by a hash of its recipe. Its 128 penultimate features give a Frechet
distance in a space tuned to the factors (the practice of "FID with a LeNet" on MNIST); its
per-factor accuracy says whether reconstructions and samples carry readable factors.

Each factor in [0, 1] is read as one of `bins` equal intervals (glasses, 0 or 1, uses the first
and last). Images are float32 [N, S, S, 3] in [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import os

import keras
import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae.runtime import files

_CLASSIFIER_VERSION = 1


def classifier_recipe(image_size: int, train_size: int = 0, epochs: int = 10) -> dict:
    """Everything the factor classifier depends on; its hash names the cached weights.

    Args:
      image_size: side of the images it reads (a run's image size), pixels.
      train_size: first N images of the built-in train split (0 = all 10,000).
      epochs: passes over them.
    """
    from tfvae.data import builtin

    return {
        "version": _CLASSIFIER_VERSION,
        "dataset": f"builtin/{builtin._VERSION}",
        "image_size": image_size,
        "train_size": train_size,
        "epochs": epochs,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "seed": 0,
        "bins": 5,
        "width": 16,
        "feature_dim": 128,
    }


def label_names() -> tuple[str, ...]:
    """The 8 built-in factors, in the order of the labels and of the classifier's heads."""
    from tfvae.data import builtin

    return builtin.LABEL_NAMES


def factor_bins(labels, bins: int) -> np.ndarray:
    """Built-in factors float [N, L] in [0, 1] -> int64 [N, L] classes: `bins` equal intervals."""
    return np.clip(np.floor(np.asarray(labels) * bins), 0, bins - 1).astype(np.int64)


class FactorClassifier(keras.Model):
    """x float32 [N, S, S, 3] in [0, 1] -> logits float32 [N, 8, bins] of the binned factors.

    Stride-2 convolutions (width, 2 width, ...) with ReLU down to 4x4, a dense layer of
    `feature_dim` ReLU units (the features of the Frechet distance), one softmax head per
    factor. No batch norm: training and inference compute the same function.
    """

    def __init__(self, recipe: dict, num_factors: int = 8):
        super().__init__()
        self.num_factors, self.bins = num_factors, recipe["bins"]
        stages = int(np.log2(recipe["image_size"] // 4))
        seeds = iter(range(recipe["seed"] * 100, recipe["seed"] * 100 + stages + 2))
        self.convs = []
        for stage in range(stages):
            conv = keras.layers.Conv2D(
                recipe["width"] * 2**stage, 4, strides=2, padding="same", activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(next(seeds)),
            )  # fmt: skip
            setattr(self, f"conv_{stage}", conv)  # named: visible to tf.train.Checkpoint too
            self.convs.append(conv)
        self.flatten = keras.layers.Flatten()
        self.to_features = keras.layers.Dense(
            recipe["feature_dim"], "relu", kernel_initializer=keras.initializers.GlorotUniform(
                next(seeds)),
        )  # fmt: skip
        self.to_logits = keras.layers.Dense(
            num_factors * self.bins, kernel_initializer=keras.initializers.GlorotUniform(
                next(seeds)),
        )  # fmt: skip

    def features(self, x):
        """float32 [N, S, S, 3] in [0, 1] -> float32 [N, feature_dim]."""
        h = tf.convert_to_tensor(x, tf.float32) * 2.0 - 1.0
        for conv in self.convs:
            h = conv(h)  # [N, S / 2^(s+1), S / 2^(s+1), width 2^s]
        return self.to_features(self.flatten(h))

    def call(self, x):
        logits = self.to_logits(self.features(x))
        return tf.reshape(logits, [-1, self.num_factors, self.bins])  # [N, L, bins]

    def predict_bins(self, images, batch_size: int = 500) -> np.ndarray:
        """Most probable class of each factor, int64 [N, L]."""
        return np.concatenate(
            [
                np.argmax(self(images[i : i + batch_size]), axis=-1)
                for i in range(0, len(images), batch_size)
            ]
        ).astype(np.int64)

    def embed(self, images, batch_size: int = 500) -> np.ndarray:
        """Features float64 [N, feature_dim] of images float [N, S, S, 3] in [0, 1]."""
        return np.concatenate(
            [
                np.asarray(self.features(images[i : i + batch_size]), np.float64)
                for i in range(0, len(images), batch_size)
            ]
        )


def builtin_split(data_dir: str, split: str, image_size: int, size: int = 0):
    """(images float32 [N, S, S, 3] in [0, 1], labels float32 [N, 8]) of a built-in split."""
    examples = data.load("builtin", split, data_dir, image_size, size)
    batch = next(iter(examples.batch(max(int(examples.cardinality()), 1))))
    return data.to_unit_interval(batch["image"]).numpy(), batch["labels"].numpy()


def _train_classifier(classifier, images, labels, recipe) -> None:
    """Adam on the summed cross-entropy of the factor heads; order from the recipe's seed."""
    classes = factor_bins(labels, recipe["bins"])
    optimizer = keras.optimizers.Adam(recipe["learning_rate"])

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = classifier(x)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        variables = classifier.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))

    rng, batch = np.random.default_rng(recipe["seed"]), recipe["batch_size"]
    for _ in range(recipe["epochs"]):
        order = rng.permutation(len(images))
        for start in range(0, len(order) - batch + 1, batch):
            index = np.sort(order[start : start + batch])
            step(images[index], classes[index])


def recipe_key(recipe: dict) -> str:
    """16 hex digits of the SHA-256 of the recipe's JSON: the name of its cache directory."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def load_or_train(
    data_dir: str, recipe: dict, cache_dir: str = ""
) -> tuple[FactorClassifier, dict]:
    """The factor classifier of a recipe: loaded from its cache, else trained once and cached.

    Cached under CACHE_DIR/<hash of the recipe>/ as weights.npz and recipe.json (written
    atomically); CACHE_DIR defaults to DATA_DIR/factor_classifier. Training is deterministic:
    seeded initialisers and a seeded data order, nothing from global random state.

    Returns:
      (classifier, info): info holds the recipe, its hash, the cache directory, whether it was
      trained now, and its factor accuracy on the built-in validation split.
    """
    data_dir = data_dir or data.default_data_dir()
    key = recipe_key(recipe)
    directory = os.path.join(cache_dir or os.path.join(data_dir, "factor_classifier"), key)
    classifier = FactorClassifier(recipe)
    classifier(tf.zeros([1, recipe["image_size"], recipe["image_size"], 3]))  # creates weights
    weights_path, info_path = (os.path.join(directory, f) for f in ("weights.npz", "recipe.json"))
    if os.path.exists(weights_path) and os.path.exists(info_path):
        with np.load(weights_path) as saved:
            classifier.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])
        with open(info_path) as f:
            return classifier, {**json.load(f), "trained_now": False}
    images, labels = builtin_split(data_dir, "train", recipe["image_size"], recipe["train_size"])
    _train_classifier(classifier, images, labels, recipe)
    val_images, val_labels = builtin_split(data_dir, "validation", recipe["image_size"])
    accuracy = factor_accuracy(classifier.predict_bins(val_images), val_labels, recipe["bins"])
    info = {"recipe": recipe, "key": key, "directory": directory,
            "validation_factor_accuracy": accuracy.tolist()}  # fmt: skip
    os.makedirs(directory, exist_ok=True)
    weights = {f"w{i}": w for i, w in enumerate(classifier.get_weights())}
    files.write_atomically(weights_path, lambda f: np.savez(f, **weights))
    files.write_json(info_path, info)
    return classifier, {**info, "trained_now": True}


def factor_accuracy(predicted_bins, labels, bins: int) -> np.ndarray:
    """Share of images whose predicted class equals the binned label, float64 [L] in [0, 1]."""
    return (np.asarray(predicted_bins) == factor_bins(labels, bins)).mean(0).astype(np.float64)


def nearest_labels(images, reference_images, reference_labels, chunk: int = 250):
    """Labels of each image's nearest reference image in pixel space (Euclidean).

    Args:
      images: float [N, H, W, 3] in [0, 1]; reference_images: float [M, H, W, 3] in [0, 1];
      reference_labels: [M, L].

    Returns:
      (labels [N, L], root-mean-square pixel distance float64 [N] in [0, 1] units).
    """
    reference = tf.reshape(
        tf.convert_to_tensor(reference_images, tf.float32), [len(reference_images), -1]
    )
    reference_norms = tf.reduce_sum(tf.square(reference), 1)  # [M]
    index, squared = [], []
    for start in range(0, len(images), chunk):
        x = tf.reshape(
            tf.convert_to_tensor(images[start : start + chunk], tf.float32),
            [-1, reference.shape[1]],
        )
        distances = (
            tf.reduce_sum(tf.square(x), 1, keepdims=True)
            + reference_norms
            - 2.0 * tf.matmul(x, reference, transpose_b=True)
        )  # fmt: skip  [n, M]
        index.append(tf.argmin(distances, 1).numpy())
        squared.append(tf.reduce_min(distances, 1).numpy())
    index, squared = np.concatenate(index), np.concatenate(squared).astype(np.float64)
    rms = np.sqrt(np.clip(squared, 0.0, None) / reference.shape[1])
    return np.asarray(reference_labels)[index], rms
