"""DUET upstream models, checkpoints and s3prl experts."""
