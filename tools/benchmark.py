"""Runs `tfvae-benchmark` (tfvae.cli.benchmark); see `--help`."""

from tfvae.cli.benchmark import run

if __name__ == "__main__":
    run()
