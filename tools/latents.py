"""Runs `tfvae-latents` (tfvae.cli.latents); see `--help`."""

from tfvae.cli.latents import run

if __name__ == "__main__":
    run()
