"""What a trained run is worth: log p(x) by importance sampling and bits/dim (estimators), sample
quality and the factor classifier behind it, the latent space (latents), the upsampling
checkerboard, training curves. Never imports figures, experiments or commands."""

DEFAULT_CHUNK_SIZE = 200  # importance samples decoded at once per image, by every command
