"""Runs `tfvae-compare-upsampling` (tfvae.cli.compare_upsampling); see `--help`."""

from tfvae.cli.compare_upsampling import run

if __name__ == "__main__":
    run()
