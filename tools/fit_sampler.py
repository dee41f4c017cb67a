"""Runs `tfvae-fit-sampler` (tfvae.cli.fit_sampler); see `--help`."""

from tfvae.cli.fit_sampler import run

if __name__ == "__main__":
    run()
