"""Process plumbing every room shares, TensorFlow-free where it can be: atomic files, metrics.json
and one-writer locks (files), the stop protocol and its exit code 75 (stopping), and the
distribution strategy with the workers' roles and agreement (cluster)."""
