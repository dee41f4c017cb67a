"""`python -m tfvae.train --flagfile=configs/iwae.flags`: the training command (tfvae.cli.train).

The library code of a run is `tfvae.training.train.train_and_evaluate`.
"""

if __name__ == "__main__":
    from tfvae.cli.train import run

    run()
