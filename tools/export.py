"""Runs `tfvae-export` (tfvae.cli.export); see `--help`."""

from tfvae.cli.export import run

if __name__ == "__main__":
    run()
