"""Runs `tfvae-bpp` (tfvae.cli.bpp); see `--help`."""

from tfvae.cli.bpp import run

if __name__ == "__main__":
    run()
