"""Runs `tfvae-decompress` (tfvae.cli.decompress); see `--help`."""

from tfvae.cli.decompress import run

if __name__ == "__main__":
    run()
