"""What a trained run is worth: bits/dim and its conventions (units), per-example sampling noise
(noise), log p(x) by importance sampling with the ELBO and IWAE-k bounds of the same samples
(bounds), a whole split with active units and its metrics.json summary (split), lossless codecs'
bits/dim (codecs), sample quality and the factor classifier behind it, the latent space
(latents), the upsampling checkerboard, training curves. Never imports figures, experiments or
commands."""

DEFAULT_CHUNK_SIZE = 200  # importance samples decoded at once per image, by every command
