"""Runs `tfvae-photos` (tfvae.cli.photos); see `--help`."""

from tfvae.cli.photos import run

if __name__ == "__main__":
    run()
