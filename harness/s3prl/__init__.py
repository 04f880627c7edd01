"""The s3prl 0.4.18 compatibility layer: every shim s3prl needs on this stack (`compat.install()`),
the audio-effect stand-ins, the libriphone module, and the Featurizer key guard. The only place in
DUET that patches another library."""
