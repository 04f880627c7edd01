"""DUET harness: the one CLI (`harness`) and the glue between upstreams, s3prl, analysis and the trainer."""
