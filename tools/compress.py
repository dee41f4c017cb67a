"""Runs `tfvae-compress` (tfvae.cli.compress); see `--help`."""

from tfvae.cli.compress import run

if __name__ == "__main__":
    run()
