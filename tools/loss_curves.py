"""Runs `tfvae-loss-curves` (tfvae.cli.loss_curves); see `--help`."""

from tfvae.cli.loss_curves import run

if __name__ == "__main__":
    run()
