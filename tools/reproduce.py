"""Runs `tfvae-reproduce` (tfvae.cli.reproduce); see `--help`."""

from tfvae.cli.reproduce import run

if __name__ == "__main__":
    run()
