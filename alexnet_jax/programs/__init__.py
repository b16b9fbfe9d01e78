"""What launch/ runs: training (§5), evaluation, inference and features, fine-tuning,
pretrained imports, sweeps, summaries and the paper's figures."""
