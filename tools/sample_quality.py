"""Runs `tfvae-sample-quality` (tfvae.cli.sample_quality); see `--help`."""

from tfvae.cli.sample_quality import run

if __name__ == "__main__":
    run()
