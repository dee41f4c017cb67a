"""Runs `tfvae-interpolate` (tfvae.cli.interpolate); see `--help`."""

from tfvae.cli.interpolate import run

if __name__ == "__main__":
    run()
