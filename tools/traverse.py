"""Runs `tfvae-traverse` (tfvae.cli.traverse); see `--help`."""

from tfvae.cli.traverse import run

if __name__ == "__main__":
    run()
