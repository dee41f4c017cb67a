"""Priors p(z) of the VAE: N(0, I) (the default) and three learned ones.

- `normal`: N(0, I).
- `mog`: a learned mixture of diagonal Gaussians, sum_c w_c N(m_c, diag(s_c^2)).
- `vamp`: the VampPrior (Tomczak & Welling 2018), (1/C) sum_c q(z|u_c) with C learned
  pseudo-images u_c in [0, 1] encoded by the model's own encoder (in inference mode, so the prior
  does not depend on the batch); with an IAF posterior each q(z|u_c) is one.
- `flow`: a masked autoregressive flow on N(0, I) (`flows.MaskedAutoregressiveFlow`).

A prior is part of the model: its weights train with the encoder and decoder, so log p(x), the
IWAE bound and bits/dim stay estimates of the model they describe. Each prior has `log_prob(z)`
(float32 [...] nats for z float32 [..., Z]) and is drawn from by `sample(prior, n, seed, T)`.
Temperature T scales the noise of a draw: z ~ N(0, T^2 I) for the standard normal; for the
mixtures a component is picked as at T = 1 and z = m_c + T s_c eps (for the VampPrior m_c, s_c
are q(z|u_c)'s, and with an IAF posterior z is its flow of that point); for the flow
z = f^-1(T u), u ~ N(0, I). T = 1 draws the prior itself.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.config import PRIORS
from tfvae.models import flows, likelihoods, posteriors

tfd = tfp.distributions

_LOG_2PI = float(np.log(2 * np.pi))


def standard_normal(latent_dim: int) -> tfd.Distribution:
    """N(0, I) over [latent_dim], float32."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim], tf.float32))


def mixture_draws(logits, n, dims: int, seed):
    """The random half of n draws of a mixture from seed int [2] (stateless Philox): components
    c ~ softmax(logits) (int32 [n]) and standard-normal noise eps (float32 [n, Z])."""
    pick_seed, noise_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    )
    component = tf.random.stateless_categorical(logits[None], n, pick_seed, dtype=tf.int32)[0]
    return component, tf.random.stateless_normal([n, dims], noise_seed, alg="philox")


class MixtureOfGaussians(keras.layers.Layer):
    """p(z) = sum_c w_c N(z; m_c, diag(s_c^2)), every parameter learned (float32 always).

    Initialised with equal weights, unit scales and means drawn from N(0, I) (the global Keras
    seed), so it starts close to N(0, I) widened a little.
    """

    def __init__(self, latent_dim: int, components: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.latent_dim, self.components = latent_dim, components
        self.logits = self.add_weight(shape=(components,), initializer="zeros", name="logits")
        self.means = self.add_weight(
            shape=(components, latent_dim), initializer=keras.initializers.RandomNormal(0, 1),
            name="means",
        )  # fmt: skip
        self.log_scales = self.add_weight(
            shape=(components, latent_dim), initializer="zeros", name="log_scales"
        )
        self.built = True  # every weight exists already

    def log_prob(self, z):
        """log p(z), float32 [...] in nats, for z float32 [..., Z]."""
        z = tf.cast(z, tf.float32)[..., None, :]  # [..., 1, Z]
        scales = tf.exp(self.log_scales)
        standardized = (z - self.means) / scales  # [..., C, Z]
        per_component = -0.5 * tf.reduce_sum(tf.square(standardized), -1) - tf.reduce_sum(
            self.log_scales, -1
        )
        per_component -= 0.5 * self.latent_dim * _LOG_2PI
        return tf.reduce_logsumexp(tf.nn.log_softmax(self.logits) + per_component, -1)

    def sample(self, n, seed=None, temperature=1.0):
        """float32 [n, Z]: a component c ~ softmax(logits), then m_c + T s_c eps."""
        component, eps = mixture_draws(self.logits, n, self.latent_dim, _seed_or_random(seed))
        scales = tf.gather(tf.exp(self.log_scales), component)
        return tf.gather(self.means, component) + tf.cast(temperature, tf.float32) * scales * eps

    def call(self, z):
        return self.log_prob(z)


def _seed_or_random(seed):
    if seed is None:
        return tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
    return tf.cast(seed, tf.int64)


class VampPrior(keras.layers.Layer):
    """p(z) = (1/C) sum_c q(z|u_c): C learned pseudo-images u_c = sigmoid(w_c) [H, W, 3] in
    [0, 1], each encoded by `encoder` with training=False (moving batch-norm statistics).

    The encoder is the VAE's own, held without being tracked a second time (its weights belong
    to the VAE). w_c starts from N(0, 1), so the pseudo-images start as mid-grey noise.
    """

    def __init__(self, encoder, components: int, image_size: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.components, self.latent_dim = components, encoder.latent_dim
        self._encode = encoder.__call__  # a bound method: Keras and checkpoints do not track it
        self.pseudo_input_logits = self.add_weight(
            shape=(components, image_size, image_size, 3),
            initializer=keras.initializers.RandomNormal(0, 1), name="pseudo_input_logits",
        )  # fmt: skip
        self.built = True

    def pseudo_inputs(self):
        """The pseudo-images u_c, float32 [C, H, W, 3] in [0, 1]."""
        return tf.sigmoid(self.pseudo_input_logits)

    def components_of(self):
        """q(z|u_c) with batch [C]: a diagonal Gaussian, or an IAF posterior (`posteriors`)."""
        return self._encode(self.pseudo_inputs(), training=False)

    def log_prob(self, z):
        """log p(z), float32 [...] in nats, for z float32 [..., Z]."""
        q = self.components_of()
        z = tf.cast(z, tf.float32)[..., None, :]  # [..., 1, Z]
        if isinstance(q, posteriors.InverseAutoregressivePosterior):  # exact: inverts the flow
            shape = tf.concat([tf.shape(z)[:-2], [self.components, self.latent_dim]], 0)
            per_component = q.log_prob(tf.broadcast_to(z, shape))  # [..., C]
        else:
            loc, scale = tf.cast(q.loc, tf.float32), tf.cast(q.scale.diag, tf.float32)
            standardized = (z - loc) / scale  # [..., C, Z]
            per_component = -0.5 * tf.reduce_sum(tf.square(standardized), -1)
            per_component -= tf.reduce_sum(tf.math.log(scale), -1)
            per_component -= 0.5 * self.latent_dim * _LOG_2PI
        return tf.reduce_logsumexp(per_component, -1) - np.log(self.components)

    def sample(self, n, seed=None, temperature=1.0):
        """float32 [n, Z]: c uniform over the pseudo-inputs, then z = m_c + T s_c eps (for an
        IAF posterior, its flow of that point given u_c's context)."""
        q = self.components_of()
        component, eps = mixture_draws(
            tf.zeros([self.components]), n, self.latent_dim, _seed_or_random(seed)
        )
        iaf = isinstance(q, posteriors.InverseAutoregressivePosterior)
        base = q.base if iaf else q
        loc, scale = tf.cast(base.loc, tf.float32), tf.cast(base.scale.diag, tf.float32)
        noise = tf.cast(temperature, tf.float32) * tf.gather(scale, component) * eps
        z = tf.gather(loc, component) + noise
        return q.flow.forward(z, tf.gather(q.context, component))[0] if iaf else z

    def call(self, z):
        return self.log_prob(z)


class FlowPrior(keras.layers.Layer):
    """p(z) = N(f(z); 0, I) |det df/dz|, f a MAF of `layers` MADEs of `width` units."""

    def __init__(self, latent_dim: int, layers: int, width: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.latent_dim = latent_dim
        self.flow = flows.MaskedAutoregressiveFlow(latent_dim, layers, width)
        self.built = True

    def log_prob(self, z):
        """log p(z), float32 [...] in nats, for z float32 [..., Z]."""
        return self.flow.log_prob(z)

    def sample(self, n, seed=None, temperature=1.0):
        """float32 [n, Z]: z = f^-1(T u), u ~ N(0, I) (Z passes of each MADE)."""
        u = tf.random.stateless_normal([n, self.latent_dim], _seed_or_random(seed), alg="philox")
        return self.flow.from_noise(tf.cast(temperature, tf.float32) * u)

    def call(self, z):
        return self.log_prob(z)


def build(config, encoder=None):
    """The prior of a Config (`--prior`, `--prior_components`, `--flow_layers`, `--flow_width`);
    the VampPrior encodes its pseudo-inputs with `encoder` (the VAE's)."""
    if config.prior == "normal":
        return standard_normal(config.latent_dim)
    if config.prior == "mog":
        return MixtureOfGaussians(config.latent_dim, config.prior_components)
    if config.prior == "vamp":
        return VampPrior(encoder, config.prior_components, config.image_size)
    if config.prior == "flow":
        return FlowPrior(config.latent_dim, config.flow_layers, config.flow_width)
    raise ValueError(f"Flag `--prior` is {config.prior!r}; accepted: {', '.join(PRIORS)}.")


def describe(config) -> str:
    """The prior of a Config in words (export metadata, docs)."""
    if getattr(config, "architecture", "dcgan") == "hierarchical":
        return ("top-down: each group's diagonal Gaussian given the groups above, "
                "N(mu_p, sigma_p^2), drawn from N(0, I) noise")  # fmt: skip
    return {
        "normal": "standard normal N(0, I) over [latent_dim]",
        "mog": f"learned mixture of {config.prior_components} diagonal Gaussians over [latent_dim]",
        "vamp": f"VampPrior: the mean of q(z|u_c) over {config.prior_components} learned "
        "pseudo-images u_c",
        "flow": f"masked autoregressive flow ({config.flow_layers} MADEs of {config.flow_width} "
        "units) on N(0, I) over [latent_dim]",
    }[config.prior]


def decoded_draws(model, n=None, seed=None, z=None, temperature=1.0):
    """`model.sample`: point estimates of p(x|z) for n draws of model.prior at temperature T
    (a number, or one per latent group top down: `latent_temperatures`), or for given codes
    z [N, Z] (then T must be 1); float32 [N, H, W, C] in [0, 1]."""
    if not min(_values(temperature)) > 0:
        raise ValueError(f"Argument `temperature` is {temperature}; it must be > 0.")
    if z is None:
        z = sample(model.prior, n, seed, latent_temperatures(model, temperature))
    elif _values(temperature) != [1.0]:
        raise ValueError("Argument `temperature` applies to prior draws; scale a given z.")
    return likelihoods.point_estimate(model.decode(z))


def _values(temperature) -> list:
    return list(temperature) if isinstance(temperature, (tuple, list)) else [temperature]


def latent_temperatures(model, temperature):
    """The temperature of each latent of a code [noise_dim], top group first: a number (every
    group at it, returned as it is) or, from one T per latent group top down (a tuple, as
    `group_slices`), float32 [noise_dim]. Raises ValueError (one line) for a tuple of another
    length."""
    if not isinstance(temperature, (tuple, list)):
        return temperature
    slices = model.group_slices()
    if len(temperature) != len(slices):
        raise ValueError(
            f"temperature {':'.join(str(float(t)) for t in temperature)} gives "
            f"{len(temperature)} value(s); "
            f"the model has {len(slices)} latent group(s): give one T, or one per group "
            "(top down, separated by ':')."
        )
    pairs = zip(slices, temperature, strict=True)
    return tf.concat([tf.fill([stop - start], float(t)) for (start, stop), t in pairs], 0)


def temperature_name(temperature) -> str:
    """'1.0' of a number, '1.0_0.8_0.6' of one T per group: the T in keys and file names
    (`samples_t{name}`)."""
    return "_".join(str(float(t)) for t in _values(temperature))


def with_lower_groups(model, top, seed=None, temperature=1.0):
    """A whole code float32 [N, noise_dim] from the code of its top groups `top` [N, W] (W the
    top group's latents, or the top g groups' together, `group_slices`): the groups below drawn
    at temperature T, eps ~ N(0, T^2 I) (T a number, or one per latent group top down, of
    which those of the groups in `top` are not used here; T = 0: each at its prior mean given
    the groups above) from a seed folded out of `seed` (int [2], or None: stateful). A code
    that is already whole is returned as it is. Raises ValueError (one line) when W does not
    end at a group."""
    top = tf.convert_to_tensor(top, tf.float32)
    width = int(top.shape[-1])
    if width == model.noise_dim:
        return top
    stops = [stop for _, stop in model.group_slices()]
    if width not in stops:
        raise ValueError(
            f"A code of {width} latents does not end at a latent group; the groups end at "
            f"{', '.join(map(str, stops))}."
        )
    rest = [tf.shape(top)[0], model.noise_dim - width]
    if isinstance(temperature, (tuple, list)):  # one T per group: those below the given ones
        below = temperature[stops.index(width) + 1 :]
        scale = latent_temperatures(model, temperature)[width:]
    else:
        below, scale = [temperature], temperature
    if all(isinstance(t, (int, float)) and t == 0 for t in below):
        return tf.concat([top, tf.zeros(rest)], -1)  # no random op at all
    if seed is not None:
        seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 1)
    lower = tf.cast(scale, tf.float32) * posteriors.standard_noise(rest, seed)
    return tf.concat([top, lower], -1)


def sample(prior, n, seed=None, temperature=1.0):
    """n draws of a prior at temperature T, float32 [n, Z] (seed: int [2] stateless, or None)."""
    if isinstance(prior, (MixtureOfGaussians, VampPrior, FlowPrior)):
        return prior.sample(n, seed, temperature)
    return tf.cast(temperature, tf.float32) * prior.sample(n, seed=seed)
