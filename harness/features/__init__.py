"""Features extracted once: the on-disk FeatureStore, the `duet_cached` s3prl expert that serves it,
and the feature loading of the analysis commands (ABX / CCA / probes)."""
