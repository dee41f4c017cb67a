"""Runs `tfvae-tune` (tfvae.cli.tune); see `--help`."""

from tfvae.cli.tune import run

if __name__ == "__main__":
    run()
