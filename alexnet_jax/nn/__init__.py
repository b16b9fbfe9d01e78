"""The net (§3): AlexNet's layers and presets, Local Response Normalization (§3.3),
overlapping pooling (§3.4), their CPU forms, and weight layouts of other frameworks."""
