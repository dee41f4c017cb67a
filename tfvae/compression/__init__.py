"""Lossless compression of images with a trained model: bits-back coding with ANS (`constriction`)
stores a set of images in about the model's negative ELBO, one self-describing file, and decodes
it back to the exact pixels.

`ans` holds the codecs (push/pop pairs over an ANS stack), `latents` the discretisation of each
latent group, `bitsback` the coder of a batch walking the model's groups, `container` the file
format, and `compress` the whole set: seed, batches, fingerprints, images in and out.
"""
