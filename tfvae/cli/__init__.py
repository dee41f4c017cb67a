"""The commands: one module per tool with `main(argv) -> exit code` and the console script
`run()`; `tools/*.py` and `python -m tfvae.train` are shims over them."""
